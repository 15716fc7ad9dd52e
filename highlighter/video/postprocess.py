"""Per-frame post-processing on the patch grid, in numpy: masks, smoothing and overlays.

Everything is computed on the small patch grid first; the picture is resized once and blended once.
"""

from __future__ import annotations

import cv2
import numpy as np

OVERLAYS = ("heatmap", "mask", "contour", "cutout", "side")


def mass_mask_np(attn: np.ndarray, threshold: float = 0.6) -> np.ndarray:
    """DINO's mass rule on (..., h, w) maps (the numpy twin of core.attention.mass_mask): bool."""
    shape = attn.shape
    flat = attn.reshape(-1, shape[-2] * shape[-1]).astype(np.float32)
    idx = np.argsort(flat, axis=-1, kind="stable")
    val = np.take_along_axis(flat, idx, axis=-1)
    cum = np.cumsum(val / val.sum(axis=-1, keepdims=True), axis=-1)
    keep = np.zeros_like(flat, dtype=bool)
    np.put_along_axis(keep, idx, cum > (1 - threshold), axis=-1)
    return keep.reshape(shape)


def fuse(attn: np.ndarray, head: int | None = None) -> np.ndarray:
    """(heads, h, w) -> (h, w): one head, or the mean of all (fused)."""
    return attn[head] if head is not None else attn.mean(axis=0)


class Smoother:
    """Temporal smoothing against flicker: an EMA of the attention map, and hysteresis on the mask (a patch
    joins when its smoothed map is in the top ``on`` mass, and leaves only when it falls out of the
    wider top ``off`` mass)."""

    def __init__(self, alpha: float = 0.5, margin: float = 0.1):
        self.alpha, self.margin = alpha, margin
        self.state: np.ndarray | None = None
        self.mask: np.ndarray | None = None

    def reset(self) -> None:
        self.state = self.mask = None

    def __call__(self, fused: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        if self.state is None or self.state.shape != fused.shape:
            self.state, self.mask = fused.astype(np.float32), None
        else:
            self.state = self.alpha * fused + (1 - self.alpha) * self.state
        strict = mass_mask_np(self.state, threshold)
        if self.mask is None:
            self.mask = strict
        else:
            loose = mass_mask_np(self.state, min(1.0, threshold + self.margin))
            self.mask = strict | (self.mask & loose)
        return self.state, self.mask


def heat_colours(grid: np.ndarray) -> np.ndarray:
    """(h, w) -> (h, w, 3) BGR, min-max normalised, on the patch grid."""
    from highlighter.render import colormap

    return colormap(grid, cv2.COLORMAP_JET, bgr=True)


def render(frame: np.ndarray, fused: np.ndarray, mask: np.ndarray, mode: str = "mask", alpha: float = 0.45,
           colour=(48, 48, 255)) -> np.ndarray:
    """Draw the overlay on a BGR frame. ``fused`` and ``mask`` are on the patch grid: everything is decided
    there, resized once (nearest for masks), and applied with whole-frame scalar blends plus one masked copy
    (binary masks need no per-pixel weights)."""
    H, W = frame.shape[:2]
    if mode == "heatmap":
        heat = cv2.resize(heat_colours(fused), (W, H), interpolation=cv2.INTER_LINEAR)
        return cv2.addWeighted(frame, 1 - alpha, heat, alpha, 0)
    if mode == "side":
        heat = cv2.resize(heat_colours(fused), (W, H), interpolation=cv2.INTER_NEAREST)
        return np.concatenate([render(frame, fused, mask, "mask", alpha, colour), heat], axis=1)
    m = cv2.resize(mask.astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST)
    if mode == "mask":
        tinted = cv2.add(cv2.convertScaleAbs(frame, alpha=1 - alpha), tuple(alpha * c for c in colour) + (0,))
        out = frame.copy()
        cv2.copyTo(tinted, m, out)
        return out
    if mode == "contour":
        out = frame.copy()
        contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, colour, max(2, min(H, W) // 160))
        return out
    if mode == "cutout":  # the background dimmed to 30%
        out = cv2.convertScaleAbs(frame, alpha=0.3)
        cv2.copyTo(frame, m, out)
        return out
    raise ValueError(f"unknown overlay {mode!r}; choose from {', '.join(OVERLAYS)}")


def full_size_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Patch-grid mask -> (H, W) uint8 0/255, nearest neighbour."""
    H, W = size
    return cv2.resize(mask.astype(np.uint8) * 255, (W, H), interpolation=cv2.INTER_NEAREST)
