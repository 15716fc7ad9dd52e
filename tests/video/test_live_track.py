"""Tracking what the user points at, without Qt: what a click and a box pick, the tracker's propagation frame after
frame (on synthetic tokens, then on blackswan with a real model), the pipeline's track overlay, and nearest-neighbour
matches of a picked region in another photo."""

from pathlib import Path

import numpy as np
import pytest
from needs import shared_data

from highlighter.evaluation import iou
from highlighter.features import box_patches, region_match, similar_region
from highlighter.postprocess import largest_box
from highlighter.render import overlay
from highlighter.runtime.base import Predictor
from highlighter.video.live_track import LiveTracker, SelectionError, select_box, select_click
from highlighter.video.pipeline import FramePipeline, Settings

OBJ, BG, OTHER = np.eye(3, 16)[0], np.eye(3, 16)[1], np.eye(3, 16)[2]


def scene(grid, squares, rng=None, noise=0.05):
    """(h*w, D) tokens: background everywhere, the object's direction in each square (i0, j0, size)."""
    h, w = grid
    t = np.tile(BG, (h, w, 1)).astype(np.float32)
    for i0, j0, s in squares:
        t[i0:i0 + s, j0:j0 + s] = OBJ
    if rng is not None:
        t = t + noise * rng.standard_normal(t.shape).astype(np.float32)
    return t.reshape(h * w, -1)


def square(grid, i0, j0, s):
    m = np.zeros(grid, bool)
    m[i0:i0 + s, j0:j0 + s] = True
    return m


# ---------------------------------------------------------------- what a click and a box pick
def test_a_click_picks_the_similar_patches_connected_to_it_not_the_similar_ones_elsewhere():
    grid = (10, 12)
    tokens = scene(grid, [(2, 2, 3), (6, 8, 2)])  # two objects alike, apart
    region = similar_region(tokens, 3 * 12 + 3, grid, 0.5)
    np.testing.assert_array_equal(region, square(grid, 2, 2, 3))
    np.testing.assert_array_equal(select_click(tokens, grid, 7 * 12 + 9, 0.5), square(grid, 6, 8, 2))
    diagonal = np.tile(BG, (4, 4, 1))
    diagonal[0, 0] = diagonal[1, 1] = OBJ  # touching by a corner only: 4-connectivity keeps them apart
    np.testing.assert_array_equal(similar_region(diagonal.reshape(16, -1), 0, (4, 4), 0.5), square((4, 4), 0, 0, 1))
    # the clicked patch is in, whatever the threshold
    assert similar_region(tokens, 0, grid, 1.5).sum() == 1


def test_a_box_picks_the_patches_centred_inside_in_any_corner_order():
    grid, size = (6, 8), (60, 80)  # 10-pixel patches
    want = np.zeros(grid, bool)
    want[1:3, 2:5] = True  # centres 15, 25 (rows) and 25, 35, 45 (columns)
    np.testing.assert_array_equal(box_patches([20, 10, 50, 30], grid, size), want)
    np.testing.assert_array_equal(box_patches([50, 30, 20, 10], grid, size), want)
    np.testing.assert_array_equal(select_box([50, 30, 20, 10], grid, size), want)


def test_an_empty_or_whole_frame_selection_is_refused_with_a_message():
    grid, size = (6, 8), (60, 80)
    with pytest.raises(SelectionError, match="no patch"):
        select_box([11, 11, 14, 14], grid, size)  # between patch centres
    with pytest.raises(SelectionError, match="whole frame"):
        select_box([0, 0, 80, 60], grid, size)
    with pytest.raises(SelectionError, match="whole frame"):
        select_click(scene(grid, []), grid, 5, 0.5)  # all patches alike
    with pytest.raises(SelectionError, match="no patch"):
        LiveTracker(scene(grid, []), grid, np.zeros(grid, bool), patch=10)


# ---------------------------------------------------------------- the tracker
def test_the_tracked_mask_follows_a_moving_object_and_a_frozen_one_would_not():
    rng = np.random.default_rng(0)
    grid, patch = (12, 16), 8
    size = (grid[0] * patch, grid[1] * patch)
    first = scene(grid, [(3, 2, 4)], rng)
    tracker = LiveTracker(first, grid, select_click(first, grid, 4 * 16 + 3, 0.7), patch)
    assert tracker.patches == 16
    for k in range(1, 9):  # one patch right per frame
        got = tracker.step(scene(grid, [(3, 2 + k, 4)], rng), grid, size)
        truth = np.kron(square(grid, 3, 2 + k, 4), np.ones((patch, patch), bool))
        assert got.shape == size and got.dtype == bool
        assert iou(got, truth) > 0.8, k
    assert iou(np.kron(tracker.selection, np.ones((patch, patch), bool)), truth) == 0  # where it was picked
    assert tracker.frames == 8


def test_the_tracker_gives_none_on_another_patch_grid():
    grid = (6, 8)
    t = scene(grid, [(1, 1, 2)])
    tracker = LiveTracker(t, grid, square(grid, 1, 1, 2), patch=8)
    assert tracker.step(scene((7, 8), [(1, 1, 2)]), (7, 8), (56, 64)) is None
    assert tracker.step(t, grid, (48, 64)).sum() > 0


class TokenPredictor(Predictor):
    """Gives the scene's tokens for a frame: the object is where the frame is bright (4x4-pixel patches)."""

    name, image_size, patch_size, num_heads = "tokens", (32, 48), 4, 1
    supports_tokens = supports_keys = True

    def run(self, blob):
        return np.full((1, 8, 12), 1.0 / 96, np.float32)

    def _tokens(self, blob):
        bright = blob[0].mean(0).reshape(8, 4, 12, 4).mean((1, 3)) > 127
        return np.where(bright[..., None], OBJ, BG).reshape(96, -1).astype(np.float32)

    def run_tokens(self, blob):
        return self.run(blob), self._tokens(blob)

    def run_features(self, blob):
        return self.run(blob), self._tokens(blob), self._tokens(blob)


def bright_square(j0):
    f = np.zeros((32, 48, 3), np.uint8)
    f[8:20, j0:j0 + 12] = 255
    return f


def test_the_pipeline_draws_the_tracked_mask_and_times_the_propagation():
    pipe = FramePipeline(TokenPredictor(), Settings())
    assert pipe.process(bright_square(4)).track is None  # nothing tracked: no mask, no time
    first = pipe.predictor(bright_square(4), tokens=True).tokens
    pipe.tracker = LiveTracker(first, (8, 12), select_box([4, 8, 16, 20], (8, 12), (32, 48)), 4)
    res = pipe.process(bright_square(12), index=1)
    truth = bright_square(12)[..., 0] > 0
    assert iou(res.track, truth) > 0.8
    np.testing.assert_array_equal(res.overlay, overlay("mask", res.frame, res.fused, res.track))
    assert res.timings["track_ms"] > 0 and res.timings["post_ms"] >= res.timings["track_ms"]
    assert res.box == largest_box(res.track) and res.shown_mask is res.track  # the box and snapshots: what is shown
    pipe.tracker = None
    res = pipe.process(bright_square(12))
    assert res.track is None and res.shown_mask is res.mask


# ---------------------------------------------------------------- Photos: matches of a picked region
def test_region_match_is_each_patchs_best_cosine_to_the_picked_patches():
    rng = np.random.default_rng(1)
    region = rng.standard_normal((3, 16))
    feats = rng.standard_normal((20, 16))
    got = region_match(region, feats, (4, 5))
    r = region / np.linalg.norm(region, axis=1, keepdims=True)
    f = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    np.testing.assert_allclose(got.ravel(), [max(fi @ rj for rj in r) for fi in f], atol=1e-6)
    feats[7] = 5 * region[1]
    assert region_match(region, feats, (4, 5)).ravel()[7] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no patches"):
        region_match(np.zeros((0, 16)), feats, (4, 5))


# ---------------------------------------------------------------- a real model on a real video
def test_blackswan_tracked_from_its_first_mask_with_the_default_model_beats_the_mask_copied():
    from PIL import Image

    from highlighter.core.formats import load_checkpoint
    from highlighter.preprocess import fit_size
    from highlighter.runtime.predictor import TorchPredictor

    seq = shared_data("video", "blackswan")
    frame = lambda k: np.asarray(Image.open(seq / "frames" / f"{k:05d}.jpg").convert("RGB"))  # noqa: E731
    truth = lambda k: np.asarray(Image.open(seq / "masks" / f"{k:05d}.png")) > 0  # noqa: E731
    ck = load_checkpoint(Path(__file__).resolve().parents[2] / "models" / "dino_default.safetensors")
    size = fit_size((480, 854), 224, ck.vit.patch_size)  # Live's default: 224 x 400, a 28 x 50 grid
    pred = TorchPredictor(ck, size)
    grid = (size[0] // 8, size[1] // 8)
    sel = np.asarray(Image.fromarray(truth(0).astype(np.uint8)).resize(grid[::-1], Image.NEAREST)) > 0
    tracker = LiveTracker(pred(frame(0), tokens=True).tokens, grid, sel, 8)
    for k in range(1, 17):
        got = tracker.step(pred(frame(k), tokens=True).tokens, grid, (480, 854))
    # measured: 0.70 against 0.47 for the first mask copied (a frozen tracker); all foreground 0.13
    assert iou(got, truth(16)) > max(0.55, iou(truth(0), truth(16)) + 0.1)
