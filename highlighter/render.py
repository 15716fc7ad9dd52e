"""Pictures for people: heatmaps, mask overlays and labelled panels (numpy + OpenCV, RGB uint8)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

MASK_COLOUR = (255, 48, 48)


def colormap(values: np.ndarray, cmap: int = cv2.COLORMAP_VIRIDIS, bgr: bool = False) -> np.ndarray:
    """(h, w) float -> (h, w, 3) uint8, RGB (or BGR for OpenCV frames), min-max normalised per map (as
    plt.imsave does)."""
    v = values.astype(np.float64)
    lo, hi = float(v.min()), float(v.max())
    u8 = np.zeros(v.shape, np.uint8) if hi <= lo else ((v - lo) / (hi - lo) * 255.0 + 0.5).astype(np.uint8)
    coloured = cv2.applyColorMap(u8, cmap)  # BGR
    return coloured if bgr else cv2.cvtColor(coloured, cv2.COLOR_BGR2RGB)


def upsample(grid: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upsampling of a patch grid, as the official scripts do (scale_factor=patch)."""
    return np.repeat(np.repeat(grid, factor, axis=0), factor, axis=1)


def heatmap(attn: np.ndarray, patch: int) -> np.ndarray:
    """Colour-map on the patch grid first, then upsample (cheaper, same picture)."""
    return upsample(colormap(attn), patch)


def overlay_mask(rgb: np.ndarray, mask: np.ndarray, colour=MASK_COLOUR, alpha: float = 0.45) -> np.ndarray:
    """Tint the masked patches and outline them. mask: (h, w) on the patch grid or (H, W)."""
    H, W = rgb.shape[:2]
    m = mask.astype(np.uint8)
    if m.shape != (H, W):
        m = cv2.resize(m, (W, H), interpolation=cv2.INTER_NEAREST)
    tint = np.empty_like(rgb)
    tint[:] = colour
    out = rgb.copy()
    sel = m.astype(bool)
    out[sel] = cv2.addWeighted(rgb, 1 - alpha, tint, alpha, 0)[sel]
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, colour, max(1, min(H, W) // 240))
    return out


def label(img: np.ndarray, text: str, height: int = 28) -> np.ndarray:
    """Add a caption bar above an image."""
    W = img.shape[1]
    bar = np.full((height, W, 3), 255, np.uint8)
    scale = 0.5
    while scale > 0.3 and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > W - 8:
        scale -= 0.05
    cv2.putText(bar, text, (4, height - 9), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, img], axis=0)


def side_by_side(panels: list[np.ndarray], captions: list[str], gap: int = 6) -> np.ndarray:
    """Equal-height panels with captions, separated by white gaps."""
    labelled = [label(p, c) for p, c in zip(panels, captions)]
    H = max(p.shape[0] for p in labelled)
    parts = []
    for i, p in enumerate(labelled):
        if p.shape[0] < H:
            p = np.concatenate([p, np.full((H - p.shape[0], p.shape[1], 3), 255, np.uint8)], axis=0)
        parts.append(p)
        if i < len(labelled) - 1:
            parts.append(np.full((H, gap, 3), 255, np.uint8))
    return np.concatenate(parts, axis=1)


def save_png(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)
    return path
