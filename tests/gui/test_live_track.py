"""Live: track what the user points at. Real clicks and drags on the view of a running (then paused) stream; the
tracked mask shown on the next frames is checked against DAVIS blackswan's ground truth; Clear and bad input."""

from pathlib import Path

import numpy as np
import pytest
from needs import qt, shared_data

qt()  # a skip on a developer's machine without the gui extra, a failure in CI
from PySide6.QtCore import QPoint, Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from highlighter.evaluation import iou  # noqa: E402
from highlighter.features import similar_region  # noqa: E402
from highlighter.render import overlay  # noqa: E402

pytestmark = pytest.mark.gui
ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "models" / "dino_default.safetensors"
CLIP = ROOT / "assets" / "cockatoo_320x180_5s.mp4"


@pytest.fixture
def env(gui_env, monkeypatch):
    from highlighter.gui.live import LiveTab

    monkeypatch.setattr(LiveTab, "_choose", lambda self: None)  # stay on torch fp32: no backend choice
    return gui_env


def open_window(qtbot, checkpoint, short):
    from highlighter.gui.app import MainWindow

    w = MainWindow(checkpoint=str(checkpoint), quiet=True)
    qtbot.addWidget(w)
    w.resize(1400, 860)
    w.show()
    w.state.set_image_size(short)
    return w


def shown(label) -> np.ndarray:
    img = label.pixmap().toImage().convertToFormat(label.pixmap().toImage().Format.Format_RGB888)
    w, h = img.width(), img.height()
    rows = np.frombuffer(img.constBits(), np.uint8, img.bytesPerLine() * h).reshape(h, -1)
    return rows[:, :3 * w].reshape(h, w, 3).copy()


def fitted(label, rgb) -> np.ndarray:
    from PySide6.QtWidgets import QLabel

    from highlighter.gui.qt_util import fit, rgb_to_pixmap

    probe = QLabel()
    probe.setPixmap(fit(rgb_to_pixmap(rgb), label.width(), label.height()))
    return shown(probe)


def settle(qtbot, live) -> None:
    """Paused: wait until no frame is in flight any more."""
    n = -1
    while n != live.frames_shown:
        n = live.frames_shown
        qtbot.wait(700)


def view_point(view, frame_shape, x: float, y: float) -> QPoint:
    pix = view.pixmap()
    s = pix.width() / frame_shape[1]
    return QPoint(round((view.width() - pix.width()) / 2 + x * s), round((view.height() - pix.height()) / 2 + y * s))


def drag(view, a: QPoint, b: QPoint) -> None:
    QTest.mousePress(view, Qt.MouseButton.LeftButton, pos=a)
    QTest.mouseMove(view, QPoint((a.x() + b.x()) // 2, (a.y() + b.y()) // 2))
    QTest.mouseMove(view, b)
    QTest.mouseRelease(view, Qt.MouseButton.LeftButton, pos=b)


def truth(seq: Path, name: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(seq / "masks" / f"{name}.png")) > 0


def start_paused_with_tokens(qtbot, live, source) -> None:
    live.source.setCurrentText(str(source))
    live.start()
    qtbot.waitUntil(lambda: live.frames_shown >= 1, timeout=90000)
    live.track.box.setChecked(True)
    assert live.settings.keep_features and live.view.drags
    assert live.status.text() == "Track: click the object, or drag a box around it"
    qtbot.waitUntil(lambda: live.shown.tokens is not None, timeout=60000)
    live.pause_btn.setChecked(True)
    settle(qtbot, live)


def tracked_frames(qtbot, live, picked, n: int) -> dict:
    """Resume, and collect the next ``n`` shown frames that carry a tracked mask, by index."""
    got = {}

    def more():
        res = live.shown
        if res.track is not None and res.index != picked.index:
            got[res.index] = (res, shown(live.view))
        return len(got) >= n

    live.pause_btn.setChecked(False)
    qtbot.waitUntil(more, timeout=120000)
    return got


def test_a_box_drawn_on_blackswan_is_tracked_on_the_next_frames_and_clear_ends_it(env, qtbot):
    seq = shared_data("video", "blackswan")
    w = open_window(qtbot, DEFAULT, 224)
    live = w.live
    start_paused_with_tokens(qtbot, live, seq / "frames")
    res = live.shown
    gt = truth(seq, res.name)
    ys, xs = np.nonzero(gt)
    # a real drag on the view, around the swan of the frame shown
    drag(live.view, view_point(live.view, res.frame.shape, xs.min(), ys.min()),
         view_point(live.view, res.frame.shape, xs.max() + 1, ys.max() + 1))
    tracker = live.pipeline.tracker
    assert tracker is not None and tracker is live.track.tracker
    h, w_ = res.mask.shape
    inside = np.zeros((h, w_), bool)
    cy, cx = (np.arange(h) + 0.5) * 480 / h, (np.arange(w_) + 0.5) * 854 / w_
    inside[(cy >= ys.min() - 3) & (cy <= ys.max() + 3)] = True
    inside[:, (cx < xs.min() - 3) | (cx > xs.max() + 3)] = False
    assert tracker.selection.sum() > 0 and not (tracker.selection & ~inside).any()  # the patches in the box
    assert tracker.selection.sum() >= 0.8 * inside.sum()
    assert live.status.text().startswith(f"Tracking {tracker.patches} patches of frame {res.index}, picked by the box")
    # shown at once, paused: the pick drawn on its frame
    want = fitted(live.view, overlay("mask", res.frame, res.fused, tracker.selection))
    assert np.abs(shown(live.view).astype(int) - want).max() <= 2
    assert live.clear_sim.isEnabled()
    # the next frames: the mask propagated (not the pick copied), shown, and on the swan
    from highlighter.core.propagation import one_hot, upsample_labels

    frozen = upsample_labels(one_hot(tracker.selection.astype(np.uint8), 2), 8, (480, 854)) == 1
    for index, (r, pixels) in tracked_frames(qtbot, live, res, 3).items():
        assert r.track.shape == r.frame.shape[:2] and not np.array_equal(r.track, frozen)
        np.testing.assert_array_equal(r.overlay, overlay("mask", r.frame, r.fused, r.track))
        assert np.abs(pixels.astype(int) - fitted(live.view, r.overlay)).max() <= 2
        score, everything = iou(r.track, truth(seq, r.name)), iou(np.ones_like(r.track), truth(seq, r.name))
        assert score > 0.25 > 1.5 * everything, (index, score)  # all foreground: 0.13
    # the fps shown counts the propagation, run in the frame's time
    n = live.frames_shown
    qtbot.waitUntil(lambda: live.frames_shown >= n + 5 and "tracking" in live.stats.text(), timeout=120000)
    assert "fps" in live.stats.text() and live.shown.timings["track_ms"] > 0
    # a snapshot saves the tracked mask, as shown
    live.pause_btn.setChecked(True)
    settle(qtbot, live)
    last = live.latest
    paths = live.snapshot()
    qtbot.waitUntil(lambda: "saved" in live.status.text(), timeout=30000)
    import cv2

    np.testing.assert_array_equal(cv2.imread(str(paths[1]), cv2.IMREAD_GRAYSCALE) > 0, last.track)
    live.pause_btn.setChecked(False)
    # Clear: no tracker, the normal overlay from the next frame
    live.clear_sim.click()
    assert live.pipeline.tracker is None and live.track.tracker is None and not live.clear_sim.isEnabled()
    assert live.status.text() == "tracking cleared: back to the mask overlay"
    n = live.frames_shown
    qtbot.waitUntil(lambda: live.frames_shown >= n + 5, timeout=60000)  # the fps line is written every 5 frames
    assert live.shown.track is None and "tracking" not in live.stats.text() and "fps" in live.stats.text()
    live.stop()
    w.close()


def test_a_click_on_the_swan_tracks_the_connected_similar_patches(env, qtbot):
    seq = shared_data("video", "blackswan")
    w = open_window(qtbot, DEFAULT, 224)
    live = w.live
    start_paused_with_tokens(qtbot, live, seq / "frames")
    live.track.similarity.setValue(0.3)
    res = live.shown
    gt = truth(seq, res.name)
    h, w_ = res.mask.shape
    ys, xs = np.nonzero(gt)
    i, j = int(np.median(ys) * h / 480), int(np.median(xs) * w_ / 854)
    y, x = (i + 0.5) * 480 / h, (j + 0.5) * 854 / w_  # the centre of that patch
    QTest.mouseClick(live.view, Qt.MouseButton.LeftButton, pos=view_point(live.view, res.frame.shape, x, y))
    tracker = live.pipeline.tracker
    assert tracker is not None
    want = similar_region(res.tokens, i * w_ + j, (h, w_), 0.3)
    np.testing.assert_array_equal(tracker.selection, want)
    assert want[i, j] and f"the click on patch ({i}, {j})" in live.status.text()
    assert np.abs(shown(live.view).astype(int) - fitted(live.view, overlay("mask", res.frame, res.fused, want))
                  ).max() <= 2
    for r, _ in tracked_frames(qtbot, live, res, 2).values():
        assert r.track.any()
    live.stop()
    w.close()


def test_bad_picks_say_why_and_start_nothing(env, qtbot):
    w = open_window(qtbot, "random:vit_tiny/16", 112)
    live = w.live
    live.track.box.setChecked(True)  # before any stream
    QTest.mouseClick(live.view, Qt.MouseButton.LeftButton, pos=QPoint(live.view.width() // 2,
                                                                      live.view.height() // 2))
    assert live.status.text().startswith("Track: no frame to pick from yet; Start a stream")
    live.track.box.setChecked(False)
    live.source.setCurrentText(str(CLIP))
    live.start()
    qtbot.waitUntil(lambda: live.frames_shown >= 1, timeout=90000)
    live.pause_btn.setChecked(True)
    settle(qtbot, live)
    res = live.shown
    assert res.tokens is None  # kept only when asked for
    live.track.box.setChecked(True)
    centre = view_point(live.view, res.frame.shape, 160, 90)
    QTest.mouseClick(live.view, Qt.MouseButton.LeftButton, pos=centre)
    assert live.pipeline.tracker is None
    assert "this frame's patch tokens were not kept (torch-fp32); tracking needs them" in live.status.text()
    assert live.status.text().endswith("resume the stream for a frame, then click again")  # paused: no next frame
    live.pause_btn.setChecked(False)
    qtbot.waitUntil(lambda: live.shown.tokens is not None, timeout=60000)
    live.pause_btn.setChecked(True)
    settle(qtbot, live)
    res = live.shown
    h, w_ = res.mask.shape
    ph, pw = 180 / h, 320 / w_
    # a box between patch centres (around a patch corner): no patch in it
    a, b = view_point(live.view, res.frame.shape, 2 * pw - 4, 2 * ph - 4), view_point(live.view, res.frame.shape,
                                                                                      2 * pw + 4, 2 * ph + 4)
    assert max(b.x() - a.x(), b.y() - a.y()) >= live.view.DRAG_MIN
    drag(live.view, a, b)
    assert live.pipeline.tracker is None and "the selection holds no patch" in live.status.text()
    # a box over the whole frame: nothing left to tell it apart from
    drag(live.view, QPoint(1, 1), QPoint(live.view.width() - 1, live.view.height() - 1))  # (0, 0): the centre
    assert live.pipeline.tracker is None and "covers the whole frame" in live.status.text()
    # beside the picture
    pix = live.view.pixmap()
    beside = (QPoint(live.view.width() // 2, 1) if pix.height() < live.view.height() - 4
              else QPoint(1, live.view.height() // 2))
    QTest.mouseClick(live.view, Qt.MouseButton.LeftButton, pos=beside)
    assert live.pipeline.tracker is None and live.status.text() == "Track: click or drag on the picture itself"
    # a good pick, then Track off: cleared
    QTest.mouseClick(live.view, Qt.MouseButton.LeftButton, pos=centre)
    assert live.pipeline.tracker is not None and live.status.text().startswith("Tracking ")
    live.track.box.setChecked(False)
    assert live.pipeline.tracker is None and live.status.text().startswith("tracking cleared")
    assert not live.view.drags
    live.stop()  # a pick on the last frame of a stopped stream: nothing would follow it
    live.track.box.setChecked(True)
    QTest.mouseClick(live.view, Qt.MouseButton.LeftButton, pos=centre)
    assert live.pipeline.tracker is None and live.status.text().startswith("Track: the stream is stopped; Start it")
    w.close()


def test_track_on_an_attention_only_backend_swaps_in_torch_and_says_so(env, qtbot):
    """The ONNX graphs give no patch tokens: ticking Track swaps in torch fp32, and a click before the tokens
    come asks for another click."""
    import highlighter.runtime.predictor as rp

    class AttentionOnly(rp.TorchPredictor):  # what the ONNX Runtime graphs are like
        supports_tokens = supports_keys = False

    w = open_window(qtbot, "random:vit_tiny/16", 112)
    live = w.live
    live.source.setCurrentText(str(CLIP))
    live.start()
    qtbot.waitUntil(lambda: live.frames_shown >= 1, timeout=90000)
    pred = AttentionOnly(w.state.ck, live.pipeline.predictor.image_size, device="cpu")
    pred.name = "ort-fp32"
    live.pipeline.predictor = pred
    n = live.frames_shown
    qtbot.waitUntil(lambda: live.frames_shown >= n + 2, timeout=30000)
    live.track.box.setChecked(True)
    QTest.mouseClick(live.view, Qt.MouseButton.LeftButton, pos=view_point(live.view, live.shown.frame.shape, 160, 90))
    assert live.pipeline.tracker is None
    qtbot.waitUntil(lambda: "now on torch-fp32" in live.status.text(), timeout=30000)
    assert "Tracking needs the patch tokens, which ort-fp32 does not give" in live.status.text()
    qtbot.waitUntil(lambda: live.shown.tokens is not None, timeout=30000)
    QTest.mouseClick(live.view, Qt.MouseButton.LeftButton, pos=view_point(live.view, live.shown.frame.shape, 160, 90))
    assert live.pipeline.tracker is not None
    qtbot.waitUntil(lambda: live.shown.track is not None, timeout=30000)
    live.stop()
    w.close()
