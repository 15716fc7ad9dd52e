"""The photo road (official preprocessing, the Photos tab and the CLI) and the live road (fast preprocessing,
the Live tab and `highlighter video`) give the same masks for the same picture at the same image size."""

import numpy as np
import pytest

from highlighter.core.checkpoint import load_checkpoint
from highlighter.core.inference import AttentionEngine
from highlighter.evaluation import iou
from highlighter.images import load_rgb
from highlighter.paths import default_checkpoint
from highlighter.preprocess import DEFAULT_IMAGE_SIZE, fit_size, input_size
from highlighter.runtime.predictor import make_predictor
from highlighter.video.pipeline import FramePipeline, Settings


@pytest.fixture(scope="module")
def shipped():
    return load_checkpoint(default_checkpoint("attention"))


def test_both_roads_default_to_the_same_input_size(shipped, photos):
    p = shipped.vit.patch_size
    engine = AttentionEngine(shipped, "cpu")
    for path in photos:
        img = load_rgb(path)
        res = engine.run(img)  # the Photos tab and `highlighter attention` without --image-size
        grid = res.attention.shape[1:]
        live = fit_size((img.height, img.width), DEFAULT_IMAGE_SIZE, p)  # the Live tab for this frame shape
        assert (grid[0] * p, grid[1] * p) == live == input_size((img.height, img.width), None, p)
        assert min(live) == DEFAULT_IMAGE_SIZE


def test_photos_and_live_masks_agree_on_the_demo_photos(shipped, photos):
    """Mean IoU >= 0.95 between the fused 60%-mass masks of the two roads (the trained default model, the
    default size); they differ only in how the photo is resampled."""
    p = shipped.vit.patch_size
    engine = AttentionEngine(shipped, "cpu")
    ious = []
    for path in photos:
        img = load_rgb(path)
        photo_mask = engine.run(img).fused_mask("mass", 0.6).astype(bool)
        size = fit_size((img.height, img.width), DEFAULT_IMAGE_SIZE, p)
        live = FramePipeline(make_predictor("torch-fp32", shipped, size, "cpu", log=lambda m: None), Settings())
        live_mask = live.process(np.asarray(img)).mask
        assert live_mask.shape == photo_mask.shape
        ious.append(iou(live_mask, photo_mask))
    assert len(ious) >= 5 and np.mean(ious) >= 0.95, ious
    assert min(ious) > 0.85, ious  # no photo is far off
