"""What the Live tab actually feeds the model for each demo photo: the same size as the photo road (issue 20,
item 14: the roads' equality was half true by definition)."""

import pytest
from needs import qt

qt()
pytestmark = pytest.mark.gui


def test_the_live_tab_feeds_the_photo_roads_input_size(window, qtbot, photos, monkeypatch):
    import numpy as np

    import highlighter.runtime.predictor as predictor
    from highlighter.images import load_rgb

    def no_choice(*a, **k):  # stay on torch fp32: the size is what is asked, not the fastest backend
        raise RuntimeError("not measured in this test")

    monkeypatch.setattr(predictor, "auto_predictor", no_choice)
    live = window.live
    p = window.state.ck.vit.patch_size
    for path in photos:
        grid = window.photos.road().process(np.asarray(load_rgb(path))).grid  # the Photos tab's, same model
        live.source.setCurrentText(str(path))
        live.start()
        qtbot.waitUntil(lambda: live.runner is not None and live.frames_shown > 0, timeout=30000)
        assert live.pipeline.predictor.image_size == (grid[0] * p, grid[1] * p), path.name
        assert live.latest.mask.shape == tuple(grid)
        live.stop()
