"""Mask rules against brute-force versions and the official torch statement, head fusion, grid to pixels."""

import numpy as np
import pytest
import torch

from highlighter.postprocess import fuse, grid_to_pixels, mass_mask, threshold_maps, upsample

from reference import mass_rule


def brute_force_mass(a: np.ndarray, t: float) -> np.ndarray:
    """Keep patch i iff the mass of all patches no larger than it exceeds 1 - t (distinct values)."""
    total = a.sum()
    return np.array([a[a <= ai].sum() / total > 1 - t for ai in a])


@pytest.mark.parametrize("t", [0.1, 0.6, 0.9, 1.0])
def test_mass_rule_matches_brute_force(t):
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.dirichlet(np.ones(200) * 0.3)
        got = mass_mask(a.reshape(1, 200), t)[0]
        np.testing.assert_array_equal(got, brute_force_mass(a, t))


def test_mass_rule_keeps_threshold_of_mass_on_peaked_maps():
    a = np.array([[0.5, 0.3, 0.1, 0.05, 0.05]])  # one 1 x 5 map
    assert mass_mask(a, 0.6)[0].tolist() == [True, True, False, False, False]  # 0.5 + 0.3 covers 60%
    assert mass_mask(a, 0.5)[0].tolist() == [True, False, False, False, False]
    # batched over heads, same answer per map
    batch = np.stack([a, a[:, ::-1]])
    assert mass_mask(batch, 0.6)[1, 0].tolist() == [False, False, False, True, True]


@pytest.mark.parametrize("t", [0.3, 0.6, 0.9])
def test_mass_rule_equals_visualize_attention_on_float32_maps(t):
    rng = np.random.default_rng(2)
    maps = rng.dirichlet(np.ones(12 * 17) * 0.4, size=6).astype(np.float32).reshape(6, 12, 17)
    np.testing.assert_array_equal(threshold_maps(maps, "mass", t), mass_rule(maps, t))


def test_percentile_and_absolute_rules():
    rng = np.random.default_rng(1)
    maps = rng.random((3, 12, 17)).astype(np.float32)
    got = threshold_maps(maps, "percentile", 70)
    for h in range(3):
        np.testing.assert_array_equal(got[h], (maps[h] >= np.percentile(maps[h], 70)).astype(np.uint8))
    got = threshold_maps(maps, "absolute", 0.25)
    np.testing.assert_array_equal(got, (maps >= 0.25).astype(np.uint8))
    assert got.dtype == np.uint8 and got.shape == maps.shape
    with pytest.raises(ValueError, match="unknown mask rule"):
        threshold_maps(maps, "median")


def test_fuse_heads_mean_and_chooser():
    maps = np.random.default_rng(3).random((6, 5, 7)).astype(np.float32)
    np.testing.assert_allclose(fuse(maps), maps.mean(0))
    np.testing.assert_allclose(fuse(maps, [1, 4]), (maps[1] + maps[4]) / 2)
    np.testing.assert_array_equal(fuse(maps, 2), maps[2])  # one head is that head's map, unchanged
    with pytest.raises(ValueError, match="out of range"):
        fuse(maps, [6])


@pytest.mark.parametrize("patch", [8, 14, 16])
def test_grid_to_pixels_is_the_official_nearest_upsampling(patch):
    grid = np.random.default_rng(patch).random((7, 11)) > 0.5
    want = torch.nn.functional.interpolate(torch.from_numpy(grid)[None, None].float(), scale_factor=patch,
                                           mode="nearest")[0, 0].numpy().astype(bool)
    got = upsample(grid, patch)
    assert got.dtype == bool and got.shape == (7 * patch, 11 * patch)
    np.testing.assert_array_equal(got, want)
    colours = np.random.default_rng(0).integers(0, 255, (7, 11, 3), dtype=np.uint8)
    np.testing.assert_array_equal(grid_to_pixels(colours, (7 * patch, 11 * patch)),
                                  np.repeat(np.repeat(colours, patch, 0), patch, 1))
