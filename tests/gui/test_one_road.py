"""The same picture through the Photos tab and through the Live tab, at the same size and with the same
preprocessing: the same mask and the same overlay, pixel for pixel (one road: ``FramePipeline.process``)."""

import numpy as np
import pytest
from needs import qt

qt()
pytestmark = pytest.mark.gui


@pytest.mark.parametrize("how", ["official", "fast"])
def test_photos_and_live_show_identical_masks_and_overlays(open_window, qtbot, photos, monkeypatch, how):
    """On the shipped default, whose near-flat maps put many patches at the 60% boundary: a last-bit difference
    anywhere on either road (the resampler, the normalisation, the model wrapper) would flip some of them."""
    import highlighter.runtime.predictor as predictor
    from highlighter.paths import default_checkpoint

    def no_choice(*a, **k):  # stay on torch fp32, the road the Photos tab takes
        raise RuntimeError("not measured in this test")

    monkeypatch.setattr(predictor, "auto_predictor", no_choice)
    w = open_window(checkpoint=str(default_checkpoint("attention")))
    qtbot.waitUntil(lambda: w.state.engine is not None, timeout=60000)
    path = photos[0]
    tab, live = w.photos, w.live
    tab.road_preprocessing = how
    tab.add_paths([str(path)])
    qtbot.waitUntil(lambda: tab.current_result() is not None and getattr(tab, "current_overlay", None) is not None,
                    timeout=60000)
    live.preprocessing = how
    live.source.setCurrentText(str(path))
    live.start()
    qtbot.waitUntil(lambda: live.runner is not None and live.frames_shown > 0, timeout=60000)
    shown = live.latest
    live.stop()
    res = tab.current_result()
    assert shown.frame.shape == res.frame.shape and np.array_equal(shown.frame, res.frame)
    assert live.pipeline.predictor.preprocessing == how and shown.grid == res.grid
    assert np.array_equal(shown.mask, tab.current_mask) and 0 < shown.mask.sum() < shown.mask.size
    assert shown.overlay.shape == tab.current_overlay.shape == np.asarray(res.frame).shape
    assert np.array_equal(shown.overlay, tab.current_overlay)


def test_a_large_photo_is_kept_once_and_drawn_on_a_smaller_copy(window, qtbot, tmp_path, cat_path):
    """A 12-megapixel-class photo: the cached result points at the gallery's array (no second copy, no overlay
    kept), and the tab draws its overlay on a copy SHOWN_MAX long, so a slider step stays quick."""
    from PIL import Image

    from highlighter.gui.photos import SHOWN_MAX

    big = tmp_path / "big_cat.jpg"
    Image.open(cat_path).convert("RGB").resize((3000, 1995), Image.BILINEAR).save(big, quality=90)
    tab = window.photos
    tab.add_paths([str(big)])
    qtbot.waitUntil(lambda: tab.current_result() is not None and getattr(tab, "current_overlay", None) is not None,
                    timeout=60000)
    res = tab.current_result()
    assert res.frame is tab.photos[str(big)] and res.frame.shape == (1995, 3000, 3) and res.overlay is None
    assert tab.current_overlay.shape == (round(1995 * SHOWN_MAX / 3000), SHOWN_MAX, 3)
    before = tab.current_overlay.copy()
    window.state.set_threshold(0.3)
    assert not np.array_equal(before, tab.current_overlay)  # redrawn at once from the cached maps
    assert tab.model_calls == 1
