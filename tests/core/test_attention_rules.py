"""Mask rules against brute-force versions, and head fusion."""

import numpy as np
import pytest
import torch

from highlighter.core.attention import fuse_heads, mass_mask, threshold_maps


def brute_force_mass(a: np.ndarray, t: float) -> np.ndarray:
    """Keep patch i iff the mass of all patches no larger than it exceeds 1 - t (distinct values)."""
    total = a.sum()
    return np.array([a[a <= ai].sum() / total > 1 - t for ai in a])


@pytest.mark.parametrize("t", [0.1, 0.6, 0.9, 1.0])
def test_mass_rule_matches_brute_force(t):
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.dirichlet(np.ones(200) * 0.3)
        got = mass_mask(torch.from_numpy(a), t).numpy()
        np.testing.assert_array_equal(got, brute_force_mass(a, t))


def test_mass_rule_keeps_threshold_of_mass_on_peaked_maps():
    a = torch.tensor([0.5, 0.3, 0.1, 0.05, 0.05])
    assert mass_mask(a, 0.6).tolist() == [True, True, False, False, False]  # 0.5 + 0.3 covers 60%
    assert mass_mask(a, 0.5).tolist() == [True, False, False, False, False]
    # batched over heads, same answer per row
    batch = torch.stack([a, a.flip(0)])
    assert mass_mask(batch, 0.6)[1].tolist() == [False, False, False, True, True]


def test_percentile_and_absolute_rules():
    rng = np.random.default_rng(1)
    maps = rng.random((3, 12, 17)).astype(np.float32)
    got = threshold_maps(torch.from_numpy(maps), "percentile", 70).numpy()
    for h in range(3):
        np.testing.assert_array_equal(got[h], (maps[h] >= np.percentile(maps[h], 70)).astype(np.uint8))
    got = threshold_maps(torch.from_numpy(maps), "absolute", 0.25).numpy()
    np.testing.assert_array_equal(got, (maps >= 0.25).astype(np.uint8))
    assert got.dtype == np.uint8 and got.shape == maps.shape


def test_fuse_heads_mean_and_chooser():
    maps = torch.rand(6, 5, 7)
    torch.testing.assert_close(fuse_heads(maps), maps.mean(0))
    torch.testing.assert_close(fuse_heads(maps, [1, 4]), (maps[1] + maps[4]) / 2)
    with pytest.raises(ValueError, match="out of range"):
        fuse_heads(maps, [6])
