"""PCA colours, patch similarity and boxes, against independent numpy computations."""

import numpy as np
import pytest

from highlighter.features import (
    best_matches,
    cosine_similarity_map,
    fit_pca,
    pca_foreground,
    pca_rgb,
)
from highlighter.postprocess import largest_box


def _features(seed=0, n=48, d=16):
    rng = np.random.default_rng(seed)
    # three strong directions plus noise, so the components are well separated
    basis = rng.normal(size=(3, d))
    return rng.normal(size=(n, 3)) * [9.0, 4.0, 2.0] @ basis + 0.1 * rng.normal(size=(n, d))


def test_pca_rgb_matches_numpy_svd():
    f = _features()
    got = pca_rgb(f, (6, 8))
    centred = f - f.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    proj = centred @ vt[:3].T
    want = (proj - proj.min(0)) / (proj.max(0) - proj.min(0))
    # principal directions are defined up to sign: compare each channel with the same or flipped sign
    for c in range(3):
        ch = got[..., c].ravel()
        assert np.allclose(ch, want[:, c], atol=1e-5) or np.allclose(ch, 1 - want[:, c], atol=1e-5), c
    assert got.shape == (6, 8, 3) and got.dtype == np.float32
    assert got.reshape(-1, 3).min(0) == pytest.approx(0) and got.reshape(-1, 3).max(0) == pytest.approx(1)


def test_joint_pca_uses_one_basis_for_every_photo():
    a, b = _features(0), _features(0)[::-1] + 0.01
    basis = fit_pca([a, b])
    ra, rb = basis.rgb(a, (6, 8)), basis.rgb(b, (6, 8))
    # the same patch (up to the tiny offset) gets the same colour in both photos
    assert np.abs(ra.reshape(-1, 3)[::-1] - rb.reshape(-1, 3)).max() < 0.01
    single = pca_rgb(b, (6, 8))  # a separate fit of b alone scales differently
    assert np.abs(single - rb).max() > 0


def test_pca_foreground_threshold_and_flip():
    f = _features()
    first = pca_rgb(f, (6, 8))[..., 0]
    fg = pca_foreground(f, (6, 8), 0.4)
    assert np.array_equal(fg, first > 0.4)
    assert np.array_equal(pca_foreground(f, (6, 8), 0.4, flip=True), first < 0.4)


def test_cosine_similarity_map():
    f = _features(1)
    sim = cosine_similarity_map(f, 13, (6, 8))
    want = np.array([np.dot(r, f[13]) / np.linalg.norm(r) / np.linalg.norm(f[13]) for r in f]).reshape(6, 8)
    np.testing.assert_allclose(sim, want, atol=1e-6)
    assert sim.ravel()[13] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="outside"):
        cosine_similarity_map(f, 48, (6, 8))
    others = [f[::-1], f]
    matches = best_matches(f[13], others, k=2)
    assert matches[0][0][0] == 47 - 13 and matches[1][0][0] == 13 and matches[1][0][1] == pytest.approx(1.0)
    assert matches[1][1][1] <= matches[1][0][1]


def test_largest_box():
    m = np.zeros((10, 20), bool)
    m[2:4, 1:3] = True  # small blob
    m[5:9, 10:17] = True  # large blob
    m[8, 17] = True  # diagonal neighbour: 8-connected, part of it
    assert largest_box(m) == [10, 5, 18, 9]
    assert largest_box(m, (100, 400)) == [200, 50, 360, 90]
    assert largest_box(np.zeros((4, 4), bool)) is None
