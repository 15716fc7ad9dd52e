"""The tabs follow one app state: what is set in Live shows in Photos and back; the model picker honours
HIGHLIGHTER_MODELS."""

import shutil
from pathlib import Path

import pytest
from needs import qt

qt()  # a skip on a developer's machine without the gui extra, a failure in CI

pytestmark = pytest.mark.gui
ROOT = Path(__file__).resolve().parents[2]


def test_overlay_threshold_and_heads_are_shared_by_live_and_photos(window, qtbot, cat_path):
    live, photos = window.live, window.photos
    photos.add_paths([str(cat_path)])
    qtbot.waitUntil(lambda: hasattr(photos, "current_mask"), timeout=20000)
    shown = photos.mask_view.pixmap().toImage()
    live.overlay.setCurrentText("cutout")  # chosen in Live ...
    assert photos.controls.overlay.currentText() == "cutout" and window.state.overlay == "cutout"
    assert photos.mask_view.pixmap().toImage() != shown  # ... and Photos redraws with it, without the model
    assert photos.model_calls == 1
    photos.threshold.setValue(30)  # set in Photos ...
    assert live.threshold.value() == 30 and live.settings.threshold == 0.3  # ... the live pipeline follows
    live.head.setCurrentIndex(2)  # head 1
    assert window.state.heads == (1,) and live.settings.heads == (1,)
    assert photos.controls.head.currentText() == "Head 1"


def test_a_new_image_size_reruns_photos_at_that_size(window, qtbot, cat_path):
    photos = window.photos
    photos.add_paths([str(cat_path)])
    qtbot.waitUntil(lambda: photos.current_result() is not None, timeout=20000)
    assert min(photos.current_result().grid) * 16 == 224
    window.live.size.setCurrentText("160")
    qtbot.waitUntil(lambda: photos.current_result() is not None, timeout=20000)
    assert min(photos.current_result().grid) * 16 == 160 and photos.model_calls == 2


def test_the_model_picker_honours_highlighter_models(qtbot, tmp_path, monkeypatch):
    models = tmp_path / "my-models"
    models.mkdir()
    shutil.copy(ROOT / "models" / "dino_default.safetensors", models / "dino_default.safetensors")
    monkeypatch.setenv("HIGHLIGHTER_SETTINGS", str(tmp_path / "s.ini"))
    monkeypatch.setenv("HIGHLIGHTER_MODELS", str(models))
    from highlighter.gui.app import MainWindow

    w = MainWindow(quiet=True)  # no checkpoint and no saved model: the default one, from HIGHLIGHTER_MODELS
    qtbot.addWidget(w)
    assert w.model_spec == str(models / "dino_default.safetensors")
    assert w.model_combo.itemData(0) == str(models / "dino_default.safetensors")
    w.live.close_writer()
