"""The app under pytest-qt (offscreen): real signals, assertions on what is shown."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from needs import qt, shared_data

qt()  # a skip on a developer's machine without the gui extra, a failure in CI
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDropEvent  # noqa: E402

pytestmark = pytest.mark.gui
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture
def window(open_window, cache, monkeypatch):
    monkeypatch.setenv("HIGHLIGHTER_CACHE", str(cache))  # the ONNX exports are shared by the module's tests
    return open_window()


def test_drop_event_with_file_urls_fills_the_gallery(window, qtbot, tmp_path, photos):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in photos] + [QUrl.fromLocalFile(str(broken))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    window.photos.dropEvent(event)
    qtbot.waitUntil(lambda: window.photos.gallery.count() == len(photos), timeout=20000)
    assert window.photos.unreadable.count() == 1 and "broken.jpg" in window.photos.unreadable.item(0).text()
    names = {window.photos.gallery.item(i).text() for i in range(window.photos.gallery.count())}
    assert names == {p.name for p in photos}
    # the first photo is analysed and shown: heatmaps for each head, fused map and mask overlay
    qtbot.waitUntil(lambda: window.photos.current_result() is not None, timeout=20000)
    qtbot.waitUntil(lambda: len(window.photos.head_views) == 3, timeout=5000)
    assert not window.photos.mask_view.pixmap().isNull() and not window.photos.fused_view.pixmap().isNull()


def test_threshold_slider_changes_the_mask_without_a_model_call(window, qtbot, cat_path):
    tab = window.photos
    tab.add_paths([str(cat_path)])
    qtbot.waitUntil(lambda: tab.current_result() is not None, timeout=20000)
    qtbot.waitUntil(lambda: hasattr(tab, "current_mask"), timeout=5000)
    calls, before = tab.model_calls, tab.current_mask.copy()
    image_before = tab.mask_view.pixmap().toImage()
    tab.threshold.setValue(20)
    assert tab.model_calls == calls == 1
    assert tab.current_mask.sum() < before.sum()
    assert tab.mask_view.pixmap().toImage() != image_before  # what is shown changed too


def test_save_all_writes_the_attention_command_files(window, qtbot, tmp_path, cat_path):
    from reference import mass_rule

    tab = window.photos
    tab.add_paths([str(cat_path)])
    qtbot.waitUntil(lambda: tab.current_result() is not None, timeout=20000)
    tab.threshold.setValue(35)  # not the default: the saved masks must follow the slider
    shown = tab.current_result()
    tab.save_all(str(tmp_path / "saved"))
    qtbot.waitUntil(lambda: window.statusBar().currentMessage().startswith("saved 1 result"), timeout=20000)
    assert (tmp_path / "saved" / "chelsea_cat_mask_overlay.png").exists()
    got = np.load(tmp_path / "saved" / "chelsea_cat.npz")
    assert got["attention"].shape[0] == 3 and got["mask"].dtype == np.uint8
    np.testing.assert_array_equal(got["attention"], shown.attention)  # the result on screen, not a new run
    np.testing.assert_array_equal(got["mask"], mass_rule(shown.attention, 0.35))  # per head
    fused = shown.attention.mean(axis=0)
    np.testing.assert_allclose(got["fused_attention"], fused, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(got["fused_mask"], mass_rule(fused, 0.35))
    np.testing.assert_array_equal(got["fused_mask"], tab.current_mask)  # what the mask view shows
    assert not np.array_equal(got["fused_mask"], mass_rule(fused, 0.6))  # the threshold made a difference


def test_live_worker_from_a_video_file_shows_overlaid_frames(window, qtbot):
    live = window.live
    live.source.setCurrentText(str(ROOT / "assets" / "cockatoo_320x180_5s.mp4"))
    live.start()
    qtbot.waitUntil(lambda: live.frames_shown >= 10, timeout=60000)
    res = live.latest
    assert res.overlay.shape == res.frame.shape
    assert np.mean(res.overlay != res.frame) > 0.05  # the overlay is drawn on the frame
    assert not live.view.pixmap().isNull()
    qtbot.waitUntil(lambda: "fps" in live.stats.text(), timeout=10000)
    assert "backend" in live.status.text()
    assert live.runner.slot.max_len <= 1  # latest frame wins: never a queue
    snaps = live.snapshot()  # written on the writer's thread
    qtbot.waitUntil(lambda: all(p.exists() for p in snaps), timeout=10000)
    live.overlay.setCurrentText("cutout")
    assert live.settings.overlay == "cutout"
    live.stop()
    assert live.runner is None and live.stats.text() == "stopped"


def test_a_missing_camera_is_a_status_and_is_retried_until_stop(window, qtbot):
    window.live.source.setCurrentText("7")
    window.live.start()
    qtbot.waitUntil(lambda: "camera 7" in window.live.status.text(), timeout=20000)
    assert window.live.runner is None and window.live.start_btn.isEnabled()
    assert "retrying" in window.live.status.text() and window.live.retry.isActive()
    window.live.stop()
    assert not window.live.retry.isActive()


def test_mae_panels_and_mask_ratio(window, qtbot, cat_path):
    from highlighter.images import load_rgb

    mae = window.mae
    window.tabs.setCurrentWidget(mae)
    qtbot.waitUntil(lambda: mae.engine is not None, timeout=20000)
    # the shipped MAE, trained without norm-pix targets: true colours, no warning banner
    assert "mae_default.safetensors" in mae.model_label.text() and not mae.banner.isVisible()
    mae.set_image(load_rgb(cat_path))
    qtbot.waitUntil(lambda: mae.result is not None, timeout=20000)
    assert all(not v.pixmap().isNull() for v in mae.views)
    assert mae.result.mask.mean() == pytest.approx(147 / 196)
    mae.ratio.setValue(50)
    qtbot.waitUntil(lambda: mae.result.mask.mean() == pytest.approx(0.5), timeout=20000)
    assert "98 of 196" in mae.note.text()
    first = int(mae.result.mask[0])
    mae.toggle_patch(0.01, 0.01)  # click the top-left patch
    qtbot.waitUntil(lambda: int(mae.result.mask[0]) == 1 - first, timeout=20000)


def test_mae_tab_accepts_a_dropped_photo(window, qtbot, cat_path):
    mae = window.mae
    qtbot.waitUntil(lambda: mae.engine is not None, timeout=20000)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(cat_path))])
    mae.dropEvent(QDropEvent(QPointF(5, 5), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                             Qt.KeyboardModifier.NoModifier))
    qtbot.waitUntil(lambda: mae.result is not None, timeout=20000)
    assert mae.image.size == (451, 300)


def test_bad_checkpoint_opens_a_dialog_and_keeps_the_old_model(window, qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    shown = []
    monkeypatch.setattr(QMessageBox, "critical", lambda *a, **k: shown.append(a[2]))
    window.quiet = False
    old, old_text = window.ck, window.model_info.text()
    bad = tmp_path / "model.pth"
    bad.write_bytes(b"\x80\x02 truncated")
    window.load_model(str(bad))
    qtbot.waitUntil(lambda: bool(shown), timeout=20000)
    assert "model.pth" in shown[0] and "\n" not in shown[0]
    assert window.ck is old and window.model_info.text() == old_text
    assert window.isVisible()


def test_settings_persist(qtbot, tmp_path, monkeypatch, cache):
    monkeypatch.setenv("HIGHLIGHTER_SETTINGS", str(tmp_path / "s.ini"))
    monkeypatch.setenv("HIGHLIGHTER_CACHE", str(cache))
    from highlighter.gui.app import MainWindow

    w = MainWindow(checkpoint="random:vit_tiny/16", quiet=True)
    qtbot.addWidget(w)
    w.live.threshold.setValue(42)
    w.live.overlay.setCurrentText("contour")
    w.live.source.setCurrentText(str(ROOT / "assets"))
    w.live.start()
    w.live.stop()
    w.close()
    w2 = MainWindow(quiet=True)
    qtbot.addWidget(w2)
    assert w2.live.threshold.value() == 42 and w2.live.overlay.currentText() == "contour"
    assert w2.live.source.currentText() == str(ROOT / "assets")
    assert w2.model_spec == "random:vit_tiny/16"


def test_training_child_process_reports_progress_and_plots(window, qtbot, tmp_path):
    src = shared_data("train", "tinyimagenet", "train")
    data = tmp_path / "photos"
    data.mkdir()
    for f in sorted(src.rglob("*.JPEG"))[:12]:
        shutil.copy(f, data / f.name)
    tab = window.train
    tab.folders.addItem(str(data))
    tab.out.setText(str(tmp_path / "run"))
    tab.epochs.setValue(2)
    tab.batch.setValue(4)
    tab.extra_args = ["--arch", "vit_tiny", "--global-crop-size", "32", "--local-crop-size", "16",
                      "--local-crops-number", "2", "--out-dim", "64", "--num-workers", "0", "--warmup-epochs", "1",
                      "--preview-images", str(ROOT / "assets" / "chelsea_cat.jpg"), "--preview-every", "3"]
    tab.start()
    qtbot.waitUntil(lambda: tab.proc is None, timeout=180000)
    assert tab.progress.value() == tab.progress.maximum() == 6
    xs, ys = tab.curves["loss"].getData()
    assert len(xs) == 6 and np.all(np.isfinite(ys))
    assert len(tab.curves["teacher_entropy"].getData()[0]) == 6
    assert not tab.preview.pixmap().isNull()
    assert (tmp_path / "run" / "checkpoint.pth").exists()
    tab.use_model()  # "Use this model" switches Live and Photos to the new teacher
    qtbot.waitUntil(lambda: window.model_spec == str(tmp_path / "run" / "checkpoint.pth"), timeout=20000)


JOB_AT_EXIT = """
import sys, time
import torch
from highlighter.gui.qt_util import Job

torch.set_num_threads(1)
x = torch.randn(600, 600)

def work():  # about 2 s, nearly all of it inside matmuls, which release the GIL
    t = time.perf_counter()
    while time.perf_counter() - t < 2.0:
        x @ x
    open(sys.argv[1], "w").write("finished")

Job(lambda r: None, print).start(work)
time.sleep(0.2)  # the script ends while the job runs
"""


def test_the_process_exits_cleanly_while_a_job_runs(tmp_path):
    """A window closed while a model still loads: the interpreter must wait for the job. As a daemon thread
    it was ended inside torch at exit and the process aborted ("terminate called without an active
    exception"), at the end of test runs too."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", JOB_AT_EXIT, str(tmp_path / "done")], capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 0 and "terminate called" not in r.stderr, (r.returncode, r.stderr[-2000:])
    assert (tmp_path / "done").read_text() == "finished"  # the job ran to its end


def test_a_failed_run_shows_its_message(window, qtbot, tmp_path):
    (tmp_path / "empty").mkdir()
    tab = window.train
    tab.folders.addItem(str(tmp_path / "empty"))
    tab.out.setText(str(tmp_path / "run"))
    tab.start()
    qtbot.waitUntil(lambda: tab.proc is None, timeout=60000)
    assert "the run failed" in tab.status.text() and "no images found" in tab.status.text()
    assert window.isVisible()


def test_closing_the_window_waits_for_its_background_jobs(window, qtbot):
    """A job still running when its window closes must neither outlive the window nor take its result to it:
    the relay is the widget's child (deleted on the GUI thread), and closeEvent waits for the thread."""
    import threading
    import time

    from highlighter.gui.qt_util import Job

    shown = []
    job = Job(window.photos.setToolTip, shown.append)  # a bound method of a widget: its relay is the widget's
    assert job.relay.parent() is window.photos
    started = threading.Event()
    job.start(lambda: (started.set(), time.sleep(1.5), "late")[2])
    assert started.wait(5)
    t0 = time.monotonic()
    window.close()
    assert time.monotonic() - t0 >= 1.0 and not job.thread.is_alive()  # close waited for the job
    qtbot.wait(50)
    assert window.photos.toolTip() == "late" and shown == []  # delivered on the GUI thread, once


def test_while_a_window_is_open_garbage_is_collected_on_the_gui_thread_only(window, qtbot):
    """A worker thread's allocation must never run the collector: it would destroy a closed window's widgets
    off the GUI thread (a hang seen in CI). The window's timer collects instead, on the GUI thread."""
    import gc
    import threading

    assert not gc.isenabled()  # the window turned automatic collection off
    collected_on = []

    def note(phase, info):
        if phase == "start":
            collected_on.append(threading.current_thread() is threading.main_thread())

    gc.callbacks.append(note)
    try:
        junk = []
        for _ in range(20000):  # cycles, far past generation 0's threshold
            a = []
            a.append(a)
            junk.append(a)
        del junk
        qtbot.waitUntil(lambda: bool(collected_on), timeout=5000)  # the timer collected...
        assert all(collected_on)  # ... and only ever on the GUI thread
    finally:
        gc.callbacks.remove(note)
    window.close()
    assert gc.isenabled()  # the last window closed: Python collects as usual again


def test_every_tab_fits_a_1366_pixel_wide_screen(window):
    """Live's Track row and the Photos similarity panel's threshold made the window 1434 px at its narrowest: on
    a 1366- or 1400-pixel screen its right side (Stop, Record, the last plot) was cut off."""
    assert window.minimumSizeHint().width() <= 1366
    for i in range(window.tabs.count()):
        assert window.tabs.widget(i).minimumSizeHint().width() <= 1366, window.tabs.tabText(i)
