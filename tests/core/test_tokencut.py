"""TokenCut on planted structure, and the keys the engine hands it."""

import numpy as np
import torch
import torch.nn.functional as F

from highlighter.core.build import build_attention_model
from highlighter.core.formats import random_checkpoint
from highlighter.postprocess import tokencut_mask


def planted(h=12, w=16, d=32, seed=0):
    rng = np.random.default_rng(seed)
    obj = np.zeros((h, w), bool)
    obj[3:8, 5:12] = True
    fg, bg = rng.normal(size=d), rng.normal(size=d)
    keys = np.where(obj.reshape(-1, 1), fg, bg) + 0.3 * rng.normal(size=(h * w, d))
    return keys, obj


def test_tokencut_recovers_a_planted_object():
    keys, obj = planted()
    attention = obj.astype(float) + 0.1
    got = tokencut_mask(keys, obj.shape, attention)
    assert (got == obj).mean() > 0.97
    # without attention, the most salient side is chosen: still one of the two regions, connected
    got = tokencut_mask(keys, obj.shape)
    assert (got == obj).mean() > 0.97 or (got == ~obj).mean() > 0.97


def test_road_keys_are_the_last_blocks_keys(cat_path):
    from highlighter.images import load_rgb
    from highlighter.video.pipeline import Settings
    from highlighter.video.session import photo_road

    ck = random_checkpoint("vit_tiny/16")
    road = photo_road(ck, "cpu", (96, 128), settings=Settings(keep_features=True))
    res = road.process(np.asarray(load_rgb(cat_path)))
    assert res.keys.shape == (6 * 8, 192)
    model = build_attention_model(ck)
    from highlighter.core.transforms import dino_preprocess  # the official path, as a tensor

    x, _ = dino_preprocess(load_rgb(cat_path), (96, 128), 16)
    with torch.no_grad():
        t = model.prepare_tokens(x)
        for blk in model.vit.blocks[:-1]:
            t = blk(t)
        last = model.vit.blocks[-1]
        y = F.layer_norm(t, (192,), last.norm1.weight, last.norm1.bias, eps=1e-6)
        k = (y @ last.attn.qkv.weight.T + last.attn.qkv.bias)[0, 1:, 192:384]
    np.testing.assert_allclose(res.keys, k.numpy(), atol=1e-5)
    mask = res.fused_mask("tokencut")
    assert mask.shape == (6, 8) and mask.dtype == bool and 0 < mask.sum() < 48
