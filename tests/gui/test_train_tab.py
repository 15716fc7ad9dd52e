"""The Train tab: no ETA after Stop, runs told apart in the model picker, a preview that fits and opens at
full size."""

import json
import sys

import numpy as np
import pytest
from needs import qt
from PIL import Image

qt()
from PySide6.QtCore import QPoint, Qt  # noqa: E402

pytestmark = pytest.mark.gui


@pytest.fixture
def window(open_window):
    return open_window(tab="train")


# a stand-in for `highlighter train --events`: one step event, then it runs until SIGTERM, then saves and exits 0
FAKE_RUN = """
import json, signal, sys, time
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
print(json.dumps({"event": "start", "total_steps": 100, "step": 0, "images": 8, "epochs": 1,
                  "steps_per_epoch": 100, "device": "cpu", "precision": "fp32"}), flush=True)
print(json.dumps({"event": "step", "step": 3, "eta_s": 3725, "img_s": 12.5, "loss": 1.0}), flush=True)
time.sleep(120)
"""


def test_stop_clears_the_eta(window, qtbot, tmp_path, monkeypatch):
    tab = window.train
    tab.folders.addItem(str(tmp_path))
    monkeypatch.setattr(tab, "command", lambda resume: ["-c", FAKE_RUN])
    tab.start()
    qtbot.waitUntil(lambda: "ETA 1:02:05" in tab.eta.text(), timeout=20000)
    assert sys.executable and tab.stop_btn.isEnabled()
    tab.stop_btn.click()
    qtbot.waitUntil(lambda: tab.proc is None, timeout=20000)
    assert tab.eta.text() == ""
    assert tab.start_btn.isEnabled() and not tab.stop_btn.isEnabled()


def write_run(folder, steps, trailing_steps=0):
    folder.mkdir(parents=True)
    (folder / "checkpoint.pth").write_bytes(b"not loaded by the picker")
    lines = [json.dumps({"event": "checkpoint", "step": s, "reason": "epoch"}) for s in steps]
    lines += [json.dumps({"event": "step", "step": steps[-1] + i, "loss": 1.0, "lr": 1e-4}) for i in
              range(trailing_steps)]
    (folder / "log.jsonl").write_text("".join(line + "\n" for line in lines))
    return folder / "checkpoint.pth"


def test_runs_are_named_by_folder_and_step_in_the_picker(window, tmp_path):
    from highlighter.core.formats import random_checkpoint
    from highlighter.core.save import save_model

    a = write_run(tmp_path / "runs" / "cats", [20, 40], trailing_steps=3000)  # a long log after the checkpoint
    b = write_run(tmp_path / "runs" / "horses", [8])
    ck = random_checkpoint("vit_tiny/16")
    best = save_model(tmp_path / "runs" / "cats" / "probe_best.safetensors", "dino", ck.vit, ck.state,
                      trained={"task": "dino", "steps": 30})
    window.set_setting("recent", [str(a), str(b), str(best)])
    window._fill_models()
    texts = {window.model_combo.itemData(i): window.model_combo.itemText(i) for i in range(window.model_combo.count())}
    assert texts[str(a)] == "cats, step 40"
    assert texts[str(b)] == "horses, step 8"
    assert texts[str(best)] == "cats, best probe (step 30)"


def test_the_preview_fits_its_space_and_opens_at_full_size(window, qtbot, tmp_path):
    from PySide6.QtWidgets import QScrollArea

    rng = np.random.default_rng(0)
    path = tmp_path / "preview_000050.png"
    Image.fromarray(rng.integers(0, 255, (1052, 2046, 3), dtype=np.uint8)).save(path)
    tab = window.train
    tab.on_event({"event": "preview", "step": 50, "epoch": 0, "path": str(path)})
    qtbot.wait(50)
    pix, view = tab.preview.pixmap(), tab.preview
    assert pix.width() / pix.height() == pytest.approx(2046 / 1052, rel=0.01)  # its aspect kept
    assert pix.width() >= view.width() - 1 or pix.height() >= view.height() - 1  # as large as the label allows
    before = pix.size()
    window.resize(1600, 1100)
    qtbot.waitUntil(lambda: tab.preview.pixmap().width() > before.width(), timeout=5000)
    assert "full size" in view.toolTip()
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=QPoint(view.width() // 2, view.height() // 2))
    dialog = tab.preview_dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.image.pixmap().size().toTuple() == (2046, 1052)
    assert isinstance(dialog.scroll, QScrollArea) and dialog.scroll.widget() is dialog.image
    dialog.close()
