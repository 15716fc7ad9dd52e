"""Issue 12's start-up target: the app streams on the model's exported ONNX graph before torch is imported, then
takes the model when it has loaded in the background, without stopping the stream."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from needs import qt

qt()
pytestmark = pytest.mark.gui
ROOT = Path(__file__).resolve().parents[2]
CLIP = ROOT / "assets" / "cockatoo_320x180_5s.mp4"


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Made once for the module: a random ViT-Ti/16 file, a cache holding a choice of torch fp32 for it at the
    clip's size (shorter side 112), and a copy of that cache with the model's graph exported at that size too."""
    from highlighter.core.formats import load_checkpoint
    from highlighter.core.save import export_safetensors
    from highlighter.runtime.predictor import onnx_for, remember_choice

    root = tmp_path_factory.mktemp("quick")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HIGHLIGHTER_CACHE", str(root / "choice"))
        path = export_safetensors(load_checkpoint("random:vit_tiny/16"), root / "tiny.safetensors", half=True)
        ck = load_checkpoint(str(path))
        remember_choice(ck, (112, 192), {"chosen": "torch-fp32", "torch-fp32": {"mean_iou": 1.0, "ms": 1.0}})
        shutil.copytree(root / "choice", root / "graph")
        mp.setenv("HIGHLIGHTER_CACHE", str(root / "graph"))
        onnx_for(ck, (112, 192))
    return root


def _copy(made, gui_env, cache: str) -> str:
    """The test's own copies (the index names its graphs relative to the cache folder, so a copy works)."""
    shutil.copytree(made / cache, gui_env / "cache")
    (gui_env / "settings.ini").write_text("[General]\nimage_size=112\n")
    return str(shutil.copy(made / "tiny.safetensors", gui_env / "tiny.safetensors"))


@pytest.fixture
def model_file(made, gui_env):
    """The model file, and a choice on disk for it; no graph."""
    return _copy(made, gui_env, "choice")


@pytest.fixture
def model(made, gui_env):
    """... with its graph exported at that size, as a previous start leaves it."""
    return _copy(made, gui_env, "graph")


def test_a_quick_start_streams_on_the_graph_then_takes_the_model_without_stopping(model, qtbot):
    from highlighter.gui.app import MainWindow
    from highlighter.postprocess import fuse, mass_mask
    from highlighter.runtime.predictor import TorchPredictor

    w = MainWindow(checkpoint=model, source=str(CLIP), quiet=True, quick_start=True)
    qtbot.addWidget(w)
    w.show()
    assert w.state.ck is None and w.quick == model  # nothing loaded yet: the window is up at once
    assert "Live streams on its ONNX graph meanwhile" in w.model_info.text()
    assert w.model_combo.currentData() == model
    assert w.mae.engine is None and w.first_model_pending  # the MAE model waits too
    w._model_picked(w.model_combo.findData("Compare with…"))  # refused until the model has loaded, and said
    assert "still loading" in w.statusBar().currentMessage() and w.state.compare_engine is None
    w.photos.add_paths([str(ROOT / "assets" / "chelsea_cat.jpg")])  # a photo dropped meanwhile waits for the model
    qtbot.waitUntil(lambda: "waiting for the model to load" in w.photos.busy.text(), timeout=30000)
    w.live.start()
    qtbot.waitUntil(lambda: w.live.frames_shown >= 1, timeout=60000)
    assert w.live.first_backend == "ort-fp32"
    assert not w.live.view.pixmap().isNull()
    assert "exported graph while the model loads" in w.live.status.text()
    runner = w.live.runner
    first = w.live.latest
    qtbot.waitUntil(lambda: w.state.ck is not None, timeout=120000)  # loads once the first frame is shown
    assert "exported graph" not in w.live.status.text()  # says what happens now (the choice), not the load
    assert Path(w.state.ck.path) == Path(model) and "tiny.safetensors" in w.model_info.text()
    qtbot.waitUntil(lambda: w.live.pipeline.predictor.name == "torch-fp32", timeout=60000)  # the saved choice
    assert w.live.runner is runner  # the same stream went on
    assert "chosen on an earlier start" in w.live.status.text()
    # the graph's masks were torch fp32's: the first frame again through the loaded model
    torch_pred = TorchPredictor(w.state.ck, (112, 192))
    assert np.array_equal(first.mask, mass_mask(fuse(torch_pred(first.frame).attention), 0.6))
    qtbot.waitUntil(lambda: w.mae.engine is not None, timeout=60000)
    qtbot.waitUntil(lambda: w.photos.busy.text() == "" and w.photos.current_result() is not None, timeout=60000)
    n = w.live.frames_shown
    qtbot.waitUntil(lambda: w.live.frames_shown > n + 2, timeout=60000)
    w.close()


def test_a_model_picked_during_the_quick_start_is_kept_when_the_first_load_lands(model, qtbot, monkeypatch):
    import threading

    from highlighter.gui.app import MainWindow

    release = threading.Event()
    real = MainWindow._try_models

    def slow(candidates):  # the first load takes longer than the user's pick
        release.wait(60)
        return real(candidates)

    monkeypatch.setattr(MainWindow, "_try_models", staticmethod(slow))
    w = MainWindow(checkpoint=model, source=str(CLIP), quiet=True, quick_start=True)
    qtbot.addWidget(w)
    w.show()
    w.live.start()
    qtbot.waitUntil(lambda: w.live.frames_shown >= 1 and w.first_job.busy, timeout=60000)
    monkeypatch.setattr(MainWindow, "_try_models", staticmethod(real))
    w.load_model("random:vit_tiny/16")  # picked in the picker while the first model still loads
    qtbot.waitUntil(lambda: w.state.model_spec == "random:vit_tiny/16", timeout=60000)
    assert w.mae.engine is None  # still waiting for the first load
    release.set()
    qtbot.waitUntil(lambda: not w.first_job.busy and w.quick is None, timeout=60000)
    assert w.state.model_spec == "random:vit_tiny/16" and "untrained" in w.model_combo.currentText()
    assert "tiny.safetensors" not in w.model_info.text()
    qtbot.waitUntil(lambda: w.mae.engine is not None, timeout=60000)  # what waited for the first load ran
    w.close()


def test_without_a_graph_for_the_size_the_stream_waits_for_the_model(model, qtbot, tmp_path):
    from highlighter.gui.app import MainWindow

    (tmp_path / "settings.ini").write_text("[General]\nimage_size=160\n")  # no graph at this size
    w = MainWindow(checkpoint=model, source=str(CLIP), quiet=True, quick_start=True)
    qtbot.addWidget(w)
    w.show()
    w.live.start()
    qtbot.waitUntil(lambda: "the stream starts when it is loaded" in w.live.status.text(), timeout=60000)
    assert w.live.frames_shown == 0 and w.live.stats.text() == "starting…"
    assert w.first_job.busy or w.state.ck is not None  # loading at once, not after the 4 s wait
    qtbot.waitUntil(lambda: w.live.frames_shown >= 1, timeout=120000)
    assert w.live.pipeline.predictor.image_size == (160, 288)
    w.close()


def test_a_stream_on_torch_leaves_a_graph_for_the_next_quick_start(model_file, qtbot, monkeypatch):
    """A choice read from disk that kept torch exported no graph: the stream exports it, and the next start of
    the app is quick."""
    from highlighter.gui import live
    from highlighter.gui.app import MainWindow
    from highlighter.runtime import graphs

    monkeypatch.setattr(live, "GRAPH_EXPORT_DELAY_MS", 0)
    w = MainWindow(checkpoint=model_file, source=str(CLIP), quiet=True, quick_start=True)
    qtbot.addWidget(w)
    assert w.quick is None and w.state.ck is not None  # no graph: the model loaded first
    w.live.start()
    qtbot.waitUntil(lambda: w.live.frames_shown >= 1 and "earlier start" in w.live.status.text(), timeout=60000)
    qtbot.waitUntil(lambda: graphs.find(model_file, 112, (180, 320)) is not None, timeout=120000)
    w.close()
    w = MainWindow(checkpoint=model_file, source=str(CLIP), quiet=True, quick_start=True)
    qtbot.addWidget(w)
    assert w.quick == model_file and w.state.ck is None
    w.live.start()
    qtbot.waitUntil(lambda: w.live.frames_shown >= 1, timeout=60000)
    assert w.live.first_backend == "ort-fp32"
    w.close()


def test_a_model_that_lands_while_the_source_opens_takes_the_stream(model, qtbot, monkeypatch):
    """The first load finished before the (slow) source opened: the stream starts on the model, not on the graph
    that no model will follow."""
    from highlighter.gui import live
    from highlighter.gui.app import MainWindow
    from highlighter.video.session import StreamKey

    real_open, windows = live.open_stream, []

    def slow_open(spec):  # a source that opens only once the model has landed (a slow camera)
        end = time.monotonic() + 60
        while windows[0].quick is not None and time.monotonic() < end:
            time.sleep(0.05)
        return real_open(spec)

    monkeypatch.setattr(live, "open_stream", slow_open)
    w = MainWindow(checkpoint=model, source=str(CLIP), quiet=True, quick_start=True)
    windows.append(w)
    qtbot.addWidget(w)
    w.show()
    w.live.start()
    w.load_first_now()  # (the 4 s timer would do it)
    qtbot.waitUntil(lambda: w.live.frames_shown >= 1, timeout=60000)
    assert w.state.ck is not None and w.live.first_backend == "torch-fp32"
    assert w.live.key == StreamKey.for_model(w.state.ck, (112, 192)) and not w.live.key.on_graph
    w.close()


def test_a_model_file_rewritten_since_it_was_loaded_gets_no_graph(model_file, qtbot, monkeypatch):
    """A run still training rewrites its checkpoint: neither the stream's export nor a measured choice may
    record what it learnt of the loaded weights under the new content."""
    from highlighter.gui import live
    from highlighter.gui.app import MainWindow
    from highlighter.runtime import graphs

    monkeypatch.setattr(live, "GRAPH_EXPORT_DELAY_MS", 0)
    w = MainWindow(checkpoint=model_file, source=str(CLIP), quiet=True)
    qtbot.addWidget(w)
    time.sleep(0.01)
    with open(model_file, "ab") as f:  # rewritten after the load: another size and time, another content
        f.write(b"\0")
    w.live.start()  # no choice on disk for the new content: it is measured (an export, int8), not kept
    qtbot.waitUntil(lambda: w.live.frames_shown >= 1 and not w.live.choice_job.busy and "measured now" in
                    w.live.status.text(), timeout=240000)
    qtbot.wait(500)
    assert not graphs.known(model_file)
    assert not list((Path(model_file).parent / "cache" / "choices").glob("*.json"))[1:]  # only the fixture's
    w.close()


def test_a_plain_window_still_loads_its_model_first(model, qtbot):
    from highlighter.gui.app import MainWindow

    w = MainWindow(checkpoint=model, quiet=True)  # tests and scripts: no quick start unless asked
    qtbot.addWidget(w)
    assert w.state.ck is not None and w.quick is None
    w.close()


def test_the_app_shows_its_first_frame_before_importing_torch(tmp_path):
    """The real command on the shipped model and its shipped graph, with a fresh cache and settings."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "HIGHLIGHTER_SETTINGS": str(tmp_path / "s.ini"), "HIGHLIGHTER_CACHE": str(tmp_path / "cache"),
           "QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path)}
    # a choice already on disk, so that the run does not wait to measure one before it quits
    code = ("from highlighter.core.formats import load_checkpoint as l; from highlighter.runtime.predictor "
            f"import remember_choice as r; r(l({str(ROOT / 'models' / 'dino_default.safetensors')!r}), (224, 400), "
            "{'chosen': 'torch-fp32'})")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "highlighter", "gui", "--quit-after", "1"], env=env,
                       capture_output=True, text=True, timeout=600)
    wall = time.monotonic() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads([x for x in r.stdout.splitlines() if x.startswith("{")][-1])
    assert got["first_backend"] == "ort-fp32" and got["torch_at_first_frame"] is False
    assert got["image_size"] == [224, 400] and got["source"] == CLIP.name
    assert 0 < got["first_frame_s"] < wall
