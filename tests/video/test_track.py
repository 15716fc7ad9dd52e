"""Tracking (``highlighter track``) against eval_video_segmentation.py restated in tests/reference.py, on the shipped
DINO model and real DAVIS frames from the shared data; and the pieces around it."""

from pathlib import Path

import numpy as np
import pytest
import torch
from needs import shared_data
from PIL import Image
from safetensors.torch import load_file

from highlighter.core.formats import load_checkpoint
from highlighter.core.propagation import PropagationCfg, propagate, upsample_labels
from highlighter.errors import HighlighterError
from highlighter.paths import default_checkpoint
from highlighter.preprocess import track_size
from highlighter.video.track import Tracker, check_frames, read_first_mask

from reference import RefViT, vos_track


@pytest.fixture(scope="module")
def default_model():
    """The shipped DINO model, in our engine and in the reference ViT (its tensors read straight from the file)."""
    path = default_checkpoint("attention")
    ck = load_checkpoint(path)
    v = ck.vit
    ref = RefViT(dim=v.embed_dim, depth=v.depth, heads=v.num_heads, patch=v.patch_size, grid=v.pos_grid,
                 hidden=v.mlp_hidden)
    ref.load_state_dict({k: t.float() for k, t in load_file(path).items()}, strict=True)
    return ck, ref.eval()


@pytest.mark.parametrize("objects, n_last, neighbourhood, frames", [
    (1, 2, 12, 4),  # the script's neighbourhood; a context of 2, so the oldest frame leaves it at the 4th frame
    (2, 1, 3, 3),  # two objects (label values), a neighbourhood that cuts the grid
])
def test_propagation_equals_the_official_script(default_model, objects, n_last, neighbourhood, frames):
    ck, ref = default_model
    seq = shared_data("video", "blackswan")
    paths = [seq / "frames" / f"{i:05d}.jpg" for i in range(frames)]
    gt = np.asarray(Image.open(seq / "masks" / "00000.png")) > 127
    labels = gt.astype(np.uint8)
    if objects == 2:  # the swan's left and right halves as objects 1 and 2
        cols = np.nonzero(gt.any(0))[0]
        labels[:, (cols[0] + cols[-1]) // 2:] *= 2
    short, patch = 160, ck.vit.patch_size  # 160 x 256 on 854 x 480 frames (a 20 x 32 grid), so the test stays fast
    want_soft, want_maps = vos_track(ref, paths, labels, patch, (short,), n_last, neighbourhood, 5)

    from highlighter.video.sources import read_rgb

    cfg = PropagationCfg(n_last=n_last, neighbourhood=neighbourhood, topk=5, temperature=0.1)
    tracker = Tracker(ck, cfg, "cpu", short)
    first = read_first_mask_from(labels)
    tracker.start(read_rgb(paths[0]), first)
    assert tracker.size == (160, 256)
    for path, soft_want, map_want in zip(paths[1:], want_soft, want_maps):
        soft = tracker.soft(read_rgb(path))
        assert soft.shape == soft_want.shape == (objects + 1, 160 // patch, 256 // patch)
        torch.testing.assert_close(soft, soft_want, rtol=0, atol=1e-5)  # measured: under 1e-6
        got = upsample_labels(soft, patch, (480, 854))
        assert got.shape == map_want.shape == (480, 854)
        np.testing.assert_array_equal(got, map_want)
    assert set(np.unique(got)) == set(range(objects + 1))


def read_first_mask_from(labels: np.ndarray):
    from highlighter.video.track import FirstMask

    n = int(labels.max())
    return FirstMask(labels, [0, 255] if n == 1 else list(range(n + 1)))


def test_tiles_equal_the_dense_affinity():
    """The tiled propagation is the script's dense one: every tile size, a neighbourhood that reaches past tiles."""
    g = torch.Generator().manual_seed(0)
    h, w, D, n, C = 7, 9, 16, 3, 3
    tgt = torch.nn.functional.normalize(torch.randn(h, w, D, generator=g), dim=-1)
    src = torch.nn.functional.normalize(torch.randn(n, h, w, D, generator=g), dim=-1)
    lab = torch.rand(n, C, h, w, generator=g)
    cfg = PropagationCfg(neighbourhood=2, topk=4, temperature=0.1)
    want = propagate(tgt, src, lab, cfg, tile=max(h, w))
    for tile in (1, 2, 3, 5):
        torch.testing.assert_close(propagate(tgt, src, lab, cfg, tile=tile), want, rtol=0, atol=1e-6)
    assert not torch.allclose(propagate(tgt, src, lab, PropagationCfg(neighbourhood=0, topk=4)), want)


def test_upsampling_takes_the_arg_max_of_the_normalised_maps():
    soft = torch.zeros(2, 2, 2)
    soft[1, 0, 0] = 1.0
    soft[0] = 1 - soft[1]
    out = upsample_labels(soft, 4, (8, 8))
    assert out.dtype == np.uint8 and out.shape == (8, 8)
    assert out[0, 0] == 1 and out[7, 7] == 0


def test_track_size_is_the_script_rule():
    assert track_size((480, 854)) == (480, 832)  # DAVIS 480p: the script's 480 x 832
    assert track_size((480, 854), 240) == (240, 384)
    assert track_size((854, 480)) == (832, 480)


def test_first_mask_checks(tmp_path):
    m = np.zeros((6, 8), np.uint8)
    Image.fromarray(m).save(tmp_path / "empty.png")
    with pytest.raises(HighlighterError, match="empty"):
        read_first_mask(tmp_path / "empty.png", (6, 8))
    m[2:4, 2:4] = 255
    Image.fromarray(m).save(tmp_path / "one.png")
    with pytest.raises(HighlighterError, match="8x6.*10x6|same size"):
        read_first_mask(tmp_path / "one.png", (6, 10))
    first = read_first_mask(tmp_path / "one.png", (6, 8))
    assert first.values == [0, 255] and first.labels.max() == 1
    m[0, 0], m[5, 7] = 3, 7
    Image.fromarray(m).save(tmp_path / "three.png")
    first = read_first_mask(tmp_path / "three.png", (6, 8))
    assert first.values == [0, 3, 7, 255]
    np.testing.assert_array_equal(first.to_values(first.labels), m)
    with pytest.raises(HighlighterError, match="no such mask"):
        read_first_mask(tmp_path / "missing.png", (6, 8))


def test_frames_in_number_order_and_gaps(tmp_path):
    names = ["1.jpg", "2.jpg", "10.jpg", "3.jpg", "4.jpg", "5.jpg", "6.jpg", "7.jpg", "8.jpg", "9.jpg"]
    files = sorted(tmp_path / n for n in names)
    assert [f.name for f in check_frames(files)] == [f"{i}.jpg" for i in range(1, 11)]
    with pytest.raises(HighlighterError, match="gap, frame 3 is missing between 2.jpg and 4.jpg"):
        check_frames([tmp_path / n for n in ("1.jpg", "2.jpg", "4.jpg")])
    with pytest.raises(HighlighterError, match="frames 3 to 5 are missing"):
        check_frames([tmp_path / n for n in ("00001.jpg", "00002.jpg", "00006.jpg")])
    assert check_frames([Path("b.jpg"), Path("a.jpg")]) == [Path("b.jpg"), Path("a.jpg")]  # not numbered: kept
