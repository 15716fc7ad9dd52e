"""The photo road (official preprocessing, the Photos tab and the CLI) and the live road (fast preprocessing,
the Live tab and `highlighter video`) give the same masks for the same picture at the same image size."""

import numpy as np
import pytest

from highlighter.core.formats import load_checkpoint
from highlighter.core.inference import AttentionEngine
from highlighter.defaults import IMAGE_SIZE
from highlighter.evaluation import iou
from highlighter.images import load_rgb
from highlighter.paths import default_checkpoint
from highlighter.preprocess import fit_size
from highlighter.runtime.predictor import make_predictor
from highlighter.video.pipeline import FramePipeline, Settings


@pytest.fixture(scope="module")
def shipped():
    return load_checkpoint(default_checkpoint("attention"))


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    """A small model in a file (built once: timm's random init is the slow part of random:...)."""
    from highlighter.core.save import save_model

    ck = load_checkpoint("random:vit_tiny/16")
    return str(save_model(tmp_path_factory.mktemp("tiny") / "tiny.safetensors", "dino", ck.vit, ck.state))


def test_both_roads_default_to_the_same_input_size(photos, cli, tmp_path, tiny_file):
    """What each road actually feeds the model for each demo photo, without --image-size: the photo road's grid
    (the Photos tab, `highlighter attention`) and the size `highlighter video` reports (the Live tab's: see
    tests/gui/test_live_input_size.py); the shorter side at the default, the aspect kept. (A small model: the
    size does not depend on the weights.)"""
    import re

    model = tiny_file
    p = 16
    engine = AttentionEngine(load_checkpoint(model), "cpu")
    for path in photos:
        img = load_rgb(path)
        grid = engine.run(img).attention.shape[1:]
        code, out, err = cli("video", path, "--checkpoint", model, "--backend", "torch-fp32", "--out",
                             tmp_path / path.stem)
        assert code == 0, err
        H, W = map(int, re.search(r"model input (\d+)x(\d+)", out).groups())
        assert (grid[0] * p, grid[1] * p) == (H, W), path.name
        assert min(H, W) == IMAGE_SIZE and abs(W / H - img.width / img.height) < 2 * p / min(H, W)


def test_photos_and_live_masks_agree_on_the_demo_photos(shipped, photos):
    """Mean IoU >= 0.95 between the fused 60%-mass masks of the two roads (the trained default model, the
    default size); they differ only in how the photo is resampled."""
    p = shipped.vit.patch_size
    engine = AttentionEngine(shipped, "cpu")
    ious = []
    for path in photos:
        img = load_rgb(path)
        photo_mask = engine.run(img).fused_mask("mass", 0.6).astype(bool)
        size = fit_size((img.height, img.width), IMAGE_SIZE, p)
        live = FramePipeline(make_predictor("torch-fp32", shipped, size, "cpu", log=lambda m: None), Settings())
        live_mask = live.process(np.asarray(img)).mask
        assert live_mask.shape == photo_mask.shape
        ious.append(iou(live_mask, photo_mask))
    assert len(ious) >= 5 and np.mean(ious) >= 0.95, ious
    assert min(ious) > 0.85, ious  # no photo is far off
