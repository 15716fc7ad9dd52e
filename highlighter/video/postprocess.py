"""Per-frame overlays drawn from the patch grid (numpy + OpenCV).

Everything is computed on the small patch grid first; the picture is resized once and blended once.
"""

from __future__ import annotations

import cv2
import numpy as np

OVERLAYS = ("heatmap", "mask", "contour", "cutout", "side")


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
