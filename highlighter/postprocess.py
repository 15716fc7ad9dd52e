"""Attention post-processing, in numpy: the one home for every road (CLI, Photos, Live, `video`, the ONNX
Runtime path, evaluation and training previews).

Maps come in as the class-token attention on the patch grid, (heads, h, w); out go the fused map (h, w),
foreground masks on the grid (DINO's mass rule, a percentile, an absolute cut, or TokenCut) and masks at
pixel size. No torch, no Qt: the ONNX Runtime predictor path imports this module.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from highlighter.defaults import MASK_RULES, MASS, THRESHOLDS

# each rule's valid parameters: (low, high, whether low itself is allowed, what it is); high is always allowed
THRESHOLD_RANGES = {"mass": (0.0, 1.0, False, "a fraction of the attention mass, above 0 and at most 1"),
                    "percentile": (0.0, 100.0, True, "a percentile from 0 to 100"),
                    "absolute": (0.0, 1.0, True, "an attention value from 0 to 1 (the maps are softmax shares)")}


def check_threshold(rule: str, threshold: float | None) -> None:
    """ValueError, naming the rule and its range, for a parameter outside it (``None``: the rule's default)."""
    if threshold is None or rule not in THRESHOLD_RANGES:
        return
    low, high, low_ok, what = THRESHOLD_RANGES[rule]
    if not ((low <= threshold if low_ok else low < threshold) and threshold <= high):
        raise ValueError(f"the {rule} rule takes {what}, got {threshold:g}")


# ============================================================================= heads
def check_heads(heads: Sequence[int] | None, num_heads: int) -> list[int] | None:
    """The chosen head indices as a list (None or empty: all heads); ValueError names the first bad one."""
    if not heads:
        return None
    bad = [h for h in heads if not 0 <= int(h) < num_heads]
    if bad:
        raise ValueError(f"head index {bad[0]} out of range: the model has heads 0..{num_heads - 1}")
    return [int(h) for h in heads]


def heads_or_all(heads: Sequence[int] | int | None, num_heads: int):
    """``heads`` when the model has every one of them, else None (all heads, fused): a second model with fewer
    heads than the first falls back to its fused map."""
    ids = (heads,) if isinstance(heads, (int, np.integer)) else heads
    return None if ids and max(ids) >= num_heads else heads


def fuse(attn: np.ndarray, heads: Sequence[int] | int | None = None) -> np.ndarray:
    """(heads, h, w) -> (h, w): the mean over the chosen heads (all by default); one int picks one head."""
    if isinstance(heads, (int, np.integer)):
        heads = [int(heads)]
    chosen = check_heads(heads, attn.shape[0])
    if chosen is None:
        return attn.mean(axis=0)
    if len(chosen) == 1:
        return attn[chosen[0]]
    return attn[chosen].mean(axis=0)


# ============================================================================= mask rules, per map
def _flat(maps: np.ndarray) -> np.ndarray:
    return maps.reshape(-1, maps.shape[-2] * maps.shape[-1])  # (maps, h*w)


def mass_mask(maps: np.ndarray, threshold: float = MASS) -> np.ndarray:
    """DINO's rule (visualize_attention.py) on each (h, w) map of (..., h, w): keep the top patches that hold
    ``threshold`` of the map's attention. Sort ascending, divide by the sum, cumulative sum, keep where
    cumsum > 1 - threshold, unsort. Returns bool of the maps' shape."""
    flat = _flat(maps)
    idx = np.argsort(flat, axis=-1, kind="stable")
    val = np.take_along_axis(flat, idx, axis=-1)
    cum = np.cumsum(val / val.sum(axis=-1, keepdims=True), axis=-1)
    keep = np.zeros(flat.shape, dtype=bool)
    np.put_along_axis(keep, idx, cum > (1 - threshold), axis=-1)
    return keep.reshape(maps.shape)


def percentile_mask(maps: np.ndarray, percentile: float = 80.0) -> np.ndarray:
    """Keep patches at or above the given percentile of each map (linear interpolation)."""
    flat = _flat(maps)
    q = np.percentile(flat, percentile, axis=-1, keepdims=True)
    return (flat >= q.astype(flat.dtype)).reshape(maps.shape)


def absolute_mask(maps: np.ndarray, cut: float = 0.01) -> np.ndarray:
    """Keep patches whose raw attention is at least ``cut``."""
    return maps >= cut


_RULES = {"mass": mass_mask, "percentile": percentile_mask, "absolute": absolute_mask}


def threshold_maps(maps: np.ndarray, rule: str = "mass", threshold: float | None = None) -> np.ndarray:
    """Apply a mask rule to maps of shape (..., h, w); returns uint8 (..., h, w) with 1 = foreground."""
    if rule not in _RULES:
        raise ValueError(f"unknown mask rule {rule!r}; choose from {', '.join(MASK_RULES)}")
    t = THRESHOLDS[rule] if threshold is None else threshold
    return _RULES[rule](np.asarray(maps), t).astype(np.uint8)


def largest_box(mask: np.ndarray, image_size: tuple[int, int] | None = None) -> list[int] | None:
    """[x0, y0, x1, y1] of the largest 8-connected component of a bool mask (x1, y1 exclusive), scaled from the
    mask's grid to ``image_size`` (H, W) when given; None for an empty mask."""
    m = np.asarray(mask).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1:
        return None
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h = (int(v) for v in stats[best, :4])
    box = [x, y, x + w, y + h]
    if image_size is not None:
        H, W = image_size
        gh, gw = m.shape
        sx, sy = W / gw, H / gh
        box = [int(round(box[0] * sx)), int(round(box[1] * sy)), int(round(box[2] * sx)), int(round(box[3] * sy))]
    return box


# ============================================================================= TokenCut
def border_ring(grid: tuple[int, int]) -> np.ndarray:
    """bool (h, w): the outermost row and column of patches on each side."""
    ring = np.zeros(grid, dtype=bool)
    ring[0], ring[-1], ring[:, 0], ring[:, -1] = True, True, True, True
    return ring


def _component(mask: np.ndarray, seed: tuple[int, int]) -> np.ndarray:
    """The 4-connected component of ``mask`` that contains ``seed``."""
    _, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=4)
    return labels == labels[seed] if mask[seed] else mask


def tokencut_mask(keys: np.ndarray, grid: tuple[int, int], attention: np.ndarray | None = None, tau: float = 0.2,
                  eps: float = 1e-5, side: str = "attention") -> np.ndarray:
    """TokenCut (Wang et al. 2022), a normalised cut over the last block's patch keys.

    keys: (h*w, D). Affinity A_ij = 1 where cos(k_i, k_j) > tau, else eps; the second-smallest generalised
    eigenvector of (D - A) x = lambda D x splits the patches in two. ``side`` picks which half is the object:
    ``attention`` (the half with more of DINO's attention, or without attention the half holding the largest
    |x|, as TokenCut), or ``border`` (Deep Spectral Methods' rule: the half that covers more of the border
    ring is the background). The object is kept to its connected component. Returns bool (h, w)."""
    k = np.asarray(keys, dtype=np.float64)
    k = k / np.maximum(np.linalg.norm(k, axis=1, keepdims=True), 1e-12)
    a = k @ k.T
    a = np.where(a > tau, 1.0, eps)
    d = a.sum(1)
    d_isqrt = 1.0 / np.sqrt(d)
    lap = np.eye(len(d)) - d_isqrt[:, None] * a * d_isqrt[None, :]  # D^-1/2 (D - A) D^-1/2
    _, vecs = np.linalg.eigh(lap)
    x = d_isqrt * vecs[:, 1]  # back to the generalised problem
    part = x > x.mean()
    h, w = grid
    if side == "border":
        ring = border_ring(grid).reshape(-1)
        if part[ring].mean() > (~part)[ring].mean():
            part = ~part
        seed_idx = int(np.argmax(np.where(part, np.abs(x), -np.inf)))
    elif attention is not None:  # the side that holds more of DINO's attention is the object
        att = np.asarray(attention).reshape(-1)
        if att[part].mean() < att[~part].mean():
            part = ~part
        seed_idx = int(np.argmax(np.where(part, att, -np.inf)))
    else:
        seed_idx = int(np.argmax(np.abs(x)))
        if not part[seed_idx]:
            part = ~part
    return _component(part.reshape(h, w), divmod(seed_idx, w))


# ============================================================================= grid to pixels
def grid_to_pixels(grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a patch grid (h, w) or (h, w, C) to (H, W[, C]); the dtype is kept (bool
    too). For whole multiples of the grid this is the official ``scale_factor=patch`` upsampling."""
    H, W = size
    if grid.shape[:2] == (H, W):
        return grid
    if grid.dtype == bool:
        return cv2.resize(grid.view(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST).view(bool)
    return cv2.resize(grid, (W, H), interpolation=cv2.INTER_NEAREST)


def upsample(grid: np.ndarray, patch: int) -> np.ndarray:
    """Each patch-grid cell to a patch x patch block, as the official scripts show maps."""
    return grid_to_pixels(grid, (grid.shape[0] * patch, grid.shape[1] * patch))


def mask_png(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A patch-grid mask as the written mask file: (H, W) uint8, 0 or 255."""
    return grid_to_pixels(np.asarray(mask).astype(np.uint8), size) * np.uint8(255)
