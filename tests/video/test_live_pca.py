"""The Live road's feature PCA and boxes: the torch predictor's patch tokens against the reference model's, the
basis fitted on the first frames and then fixed (and refitted on demand), the box drawn where the mask is."""

import numpy as np
import pytest
import torch

from highlighter.core.formats import load_checkpoint
from highlighter.postprocess import largest_box
from highlighter.preprocess import fast
from highlighter.render import BOX_COLOUR, DIMMED
from highlighter.runtime.predictor import TorchPredictor
from highlighter.video.pipeline import PCA_FIT_FRAMES, FramePipeline, Settings

import official_files as off
from reference import MEAN, STD, x_norm_patchtokens

SIZE = (252, 336)  # 18 x 24 patches of 14


@pytest.fixture(scope="module")
def dinov2(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "dinov2_reg.pth"
    ref = off.dinov2_official(path, registers=4, grid=16, depth=3, seed=11)
    return ref, TorchPredictor(load_checkpoint(str(path)), SIZE, device="cpu")


def frames(n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        f = np.full((180, 240, 3), 40, np.uint8)
        f[30 + 5 * i:120 + 5 * i, 60:170] = rng.integers(120, 255, 3)  # a bright block that moves
        out.append(f + rng.integers(0, 20, f.shape, dtype=np.uint8))
    return out


def test_torch_predictor_tokens_are_the_reference_x_norm_patchtokens(dinov2):
    ref, pred = dinov2
    f = frames(1)[0]
    p = pred(f, tokens=True)
    blob = fast(f, SIZE)  # the live road's resize; the reference normalises it as ToTensor + Normalize would
    x = (torch.from_numpy(blob) / 255 - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    with torch.no_grad():
        want = x_norm_patchtokens(ref, x)[0].numpy()
    assert p.tokens.shape == (18 * 24, 192)  # 4 registers and the class token dropped
    np.testing.assert_allclose(p.tokens, want, atol=2e-4)
    assert pred(f).tokens is None  # only when asked: the attention-only pass skips the last block's output


def test_pca_overlay_basis_fitted_on_the_first_frames_then_fixed(dinov2):
    ref, pred = dinov2
    pipe = FramePipeline(pred, Settings(overlay="pca"))
    clip = frames(PCA_FIT_FRAMES + 2)
    results = [pipe.process(f) for f in clip]
    # the first PCA_FIT_FRAMES frames' tokens, one SVD, min-max over them all: numpy, independently
    toks = [pred(f, tokens=True).tokens.astype(np.float64) for f in clip[:PCA_FIT_FRAMES]]
    allt = np.concatenate(toks)
    centred = allt - allt.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    proj = centred @ vt[:3].T
    lo, hi = proj.min(0), proj.max(0)
    for r, f in zip(results[PCA_FIT_FRAMES - 1:], clip[PCA_FIT_FRAMES - 1:]):
        p = (pred(f, tokens=True).tokens - allt.mean(0)) @ vt[:3].T
        want = np.clip((p - lo) / (hi - lo), 0, 1)
        got = r.pca.reshape(-1, 3)
        for c in range(3):
            assert np.allclose(got[:, c], want[:, c], atol=2e-3) or np.allclose(got[:, c], 1 - want[:, c], atol=2e-3)
    basis = pipe.pca_basis
    again = pipe.process(clip[0])  # later frames do not move the basis: the same frame, the same colours
    assert pipe.pca_basis is basis
    np.testing.assert_array_equal(again.pca, pipe.process(clip[0]).pca)
    # the overlay is the colours, each patch a 14 x 14 block, over the whole frame (no background removal)
    cell = (np.clip(again.pca[0, 0], 0, 1) * 255 + 0.5).astype(np.uint8)
    assert again.overlay.shape == (180, 240, 3)
    np.testing.assert_array_equal(again.overlay[0, 0], cell)
    assert pipe.pca_fitted_on == PCA_FIT_FRAMES
    pipe.refit_pca()
    pipe.process(clip[-1])
    assert pipe.pca_basis is not basis and pipe.pca_fitted_on == 1


def test_pca_background_removal_dims_the_background(dinov2):
    _, pred = dinov2
    f = frames(1)[0]
    pipe = FramePipeline(pred, Settings(overlay="pca", pca_background=True, pca_threshold=0.5))
    r = pipe.process(f)
    fg_first = r.pca[..., 0] > 0  # foreground patches keep colours; background ones are black in r.pca
    assert 0 < fg_first.mean() < 1
    first = pipe.pca_basis.rgb(pred(f, tokens=True).tokens, (18, 24))[..., 0]
    np.testing.assert_array_equal(r.pca.any(-1), first > 0.5)
    flipped = FramePipeline(pred, Settings(overlay="pca", pca_background=True, pca_flip=True)).process(f)
    np.testing.assert_array_equal(flipped.pca.any(-1), first < 0.5)
    # a background patch shows the frame dimmed
    i, j = np.argwhere(~(first > 0.5))[0]
    y, x = int(i * 180 / 18) + 2, int(j * 240 / 24) + 2
    assert np.abs(r.overlay[y, x].astype(int) - np.round(f[y, x] * DIMMED)).max() <= 1


def test_pca_on_a_backend_without_tokens_says_so(dinov2):
    _, pred = dinov2
    r = FramePipeline(pred, Settings(overlay="pca")).process(frames(1)[0])
    assert r.pca is not None
    pred.supports_tokens = False
    try:
        r = FramePipeline(pred, Settings(overlay="pca")).process(frames(1)[0])
    finally:
        del pred.supports_tokens
    assert r.pca is None and r.overlay.shape == (180, 240, 3)
    assert r.overlay[20:30, 8:200].max() == 255  # the white note on the dimmed frame


def test_box_is_computed_and_drawn(dinov2):
    _, pred = dinov2
    f = frames(1)[0]
    r = FramePipeline(pred, Settings(overlay="contour", box=True)).process(f)
    assert r.box == largest_box(r.mask, f.shape[:2]) and r.box is not None
    x0, y0, x1, y1 = r.box
    assert tuple(r.overlay[y0, (x0 + x1) // 2]) == BOX_COLOUR and tuple(r.overlay[y1 - 1, (x0 + x1) // 2]) == BOX_COLOUR
    plain = FramePipeline(pred, Settings(overlay="contour")).process(f)
    assert plain.box == r.box and not np.array_equal(plain.overlay, r.overlay)


def test_video_command_pca_overlay_runs_on_torch(tmp_path, cli):
    import cv2

    w = cv2.VideoWriter(str(tmp_path / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    for f in frames(12):
        w.write(cv2.resize(f, (96, 64)))
    w.release()
    code, out, err = cli("video", tmp_path / "clip.mp4", "--checkpoint", "random:vit_tiny/16", "--overlay", "pca",
                         "--box", "--image-size", 64, "--out", tmp_path / "o")
    assert code == 0, err
    assert "backend: torch-fp32 (the pca overlay needs the patch tokens" in out
    # every frame of the mp4 is the pipeline's own PCA overlay (the basis fitted on the first frames, then kept),
    # not the dimmed frame with a note that a predictor without tokens gives (its std is high too)
    from highlighter.render import overlay
    from highlighter.video.sources import open_source

    size = (64, 96)  # --image-size 64: the shorter side, the clip's 3:2 aspect
    pipe = FramePipeline(TorchPredictor(load_checkpoint("random:vit_tiny/16"), size, device="cpu"),
                         Settings(overlay="pca", box=True))
    source = open_source(str(tmp_path / "clip.mp4"))
    want = [pipe.process(f.image) for f in source]
    source.close()
    cap = cv2.VideoCapture(str(tmp_path / "o" / "overlay.mp4"))
    got = []
    while (read := cap.read())[0]:
        got.append(cv2.cvtColor(read[1], cv2.COLOR_BGR2RGB).astype(np.float32))
    assert len(got) == len(want) == 12
    for i, (g, w) in enumerate(zip(got, want)):
        fallback = overlay("pca", w.frame, w.fused, w.mask).astype(np.float32)
        err = np.abs(g - w.overlay).mean()
        assert err < 6 and err < 0.5 * np.abs(g - fallback).mean(), (i, err, np.abs(g - fallback).mean())
    code, _, err = cli("video", tmp_path / "clip.mp4", "--checkpoint", "random:vit_tiny/16", "--overlay", "pca",
                       "--backend", "ort-int8", "--out", tmp_path / "p")
    assert code != 0 and "needs the patch tokens" in err
