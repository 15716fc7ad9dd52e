"""Pictures for people, drawn in one place: the colour map, the mask tint, heatmaps, the overlay modes
and captioned panels. The CLI's PNGs, the Photos and Live tabs, `highlighter video` and the training
previews all draw through here, so they look the same.

Everything is RGB uint8; OpenCV's BGR order appears only where frames are read or written (video/).
Overlays are decided on the patch grid: the grid is resized once (nearest for masks) and blended with
whole-frame scalar operations plus one masked copy, about 1 ms for an 854 x 480 frame.

Overlay modes are looked up by name in a registry, the way timm's model factories are::

    @register_overlay("mask")
    def mask_overlay(image, fused, mask, alpha): ...

    overlay("mask", image, fused, mask)      # list_overlays() -> ['heatmap', 'mask', ...]
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from highlighter.postprocess import grid_to_pixels, upsample

MASK_COLOUR = (255, 48, 48)  # RGB: the one tint of a mask
ALPHA = 0.45  # how much of the tint (or heatmap) covers the picture
COLOUR_MAP = cv2.COLORMAP_VIRIDIS  # the official scripts' heatmaps (plt.imsave's default)
DIMMED = 0.3  # what is left of the background in a cutout


def colormap(values: np.ndarray) -> np.ndarray:
    """(h, w) float -> (h, w, 3) uint8 RGB in the colour map, min-max normalised per map (as plt.imsave)."""
    v = np.asarray(values, dtype=np.float64)
    lo, hi = float(v.min()), float(v.max())
    u8 = np.zeros(v.shape, np.uint8) if hi <= lo else ((v - lo) / (hi - lo) * 255.0 + 0.5).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(u8, COLOUR_MAP), cv2.COLOR_BGR2RGB)


def heatmap(attn: np.ndarray, patch: int) -> np.ndarray:
    """The map as the official scripts show it: colour-mapped on the patch grid, each patch a block."""
    return upsample(colormap(attn), patch)


def line_width(shape: tuple[int, ...]) -> int:
    return max(2, min(shape[0], shape[1]) // 160)


def _pixels(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A grid (or pixel) mask as (H, W) uint8 0/1 for OpenCV."""
    return grid_to_pixels(np.asarray(mask).astype(np.uint8), shape[:2])


def _outline(out: np.ndarray, m: np.ndarray, colour=MASK_COLOUR) -> np.ndarray:
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, colour, line_width(out.shape))
    return out


# The tints of tracked objects 1, 2, ... (then again): the mask colour first, so one object looks as a mask does.
LABEL_COLOURS = (MASK_COLOUR, (48, 160, 255), (255, 210, 0), (200, 64, 255), (0, 220, 140), (255, 128, 0))


def labels_overlay(image: np.ndarray, labels: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """Label indices (H, W) at the picture's size, 0 = background: each object tinted and outlined in its
    colour (``LABEL_COLOURS``)."""
    out = image.copy()
    for i in (int(v) for v in np.unique(labels) if v):
        colour = LABEL_COLOURS[(i - 1) % len(LABEL_COLOURS)]
        m = (labels == i).astype(np.uint8)
        tint = np.empty_like(image)
        tint[:] = colour
        cv2.copyTo(cv2.addWeighted(image, 1 - alpha, tint, alpha, 0), m, out)
        _outline(out, m, colour)
    return out


# ============================================================================= the overlay registry
OverlayFn = Callable[[np.ndarray, np.ndarray, np.ndarray, float], np.ndarray]
_OVERLAYS: dict[str, OverlayFn] = {}


def register_overlay(name: str) -> Callable[[OverlayFn], OverlayFn]:
    """Register ``fn(image (H, W, 3) RGB, fused (h, w), mask (h, w), alpha) -> RGB`` under ``name``."""

    def add(fn: OverlayFn) -> OverlayFn:
        _OVERLAYS[name] = fn
        return fn

    return add


def list_overlays() -> list[str]:
    return list(_OVERLAYS)


def overlay(name: str, image: np.ndarray, fused: np.ndarray, mask: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """Draw overlay mode ``name`` on an RGB picture; ``fused`` and ``mask`` are on the patch grid (or, for the
    mask, already at the picture's size)."""
    try:
        fn = _OVERLAYS[name]
    except KeyError:
        raise ValueError(f"unknown overlay {name!r}; choose from {', '.join(_OVERLAYS)}") from None
    return fn(image, fused, mask, alpha)


_TINTS: dict[tuple[int, ...], np.ndarray] = {}


def _tint(shape: tuple[int, ...]) -> np.ndarray:
    """A picture of the mask colour, made once per frame size (the blend then takes one pass)."""
    t = _TINTS.get(shape)
    if t is None:
        if len(_TINTS) > 8:
            _TINTS.clear()
        t = _TINTS[shape] = np.empty(shape, np.uint8)
        t[:] = MASK_COLOUR
    return t


@register_overlay("mask")
def mask_overlay(image, fused, mask, alpha):
    """The mask tinted and outlined."""
    m = _pixels(mask, image.shape)
    tinted = cv2.addWeighted(image, 1 - alpha, _tint(image.shape), alpha, 0)
    out = image.copy()
    cv2.copyTo(tinted, m, out)
    return _outline(out, m)


@register_overlay("heatmap")
def heatmap_overlay(image, fused, mask, alpha):
    """The fused map, colour-mapped on the grid, smoothly resized and blended over the picture."""
    H, W = image.shape[:2]
    heat = cv2.resize(colormap(fused), (W, H), interpolation=cv2.INTER_LINEAR)
    return cv2.addWeighted(image, 1 - alpha, heat, alpha, 0)


@register_overlay("contour")
def contour_overlay(image, fused, mask, alpha):
    """Only the mask's outline."""
    return _outline(image.copy(), _pixels(mask, image.shape))


@register_overlay("cutout")
def cutout_overlay(image, fused, mask, alpha):
    """The object as it is, the background dimmed."""
    out = cv2.convertScaleAbs(image, alpha=DIMMED)
    cv2.copyTo(image, _pixels(mask, image.shape), out)
    return out


@register_overlay("side")
def side_overlay(image, fused, mask, alpha):
    """The mask overlay and the fused heatmap side by side (twice as wide)."""
    heat = grid_to_pixels(colormap(fused), image.shape[:2])
    return np.concatenate([mask_overlay(image, fused, mask, alpha), heat], axis=1)


@register_overlay("pca")
def pca_overlay(image, fused, mask, alpha):
    """The PCA colours of the patch features: here ``fused`` is (h, w, 3) in [0, 1] (``features.pca_rgb``), each
    patch a block; patches outside ``mask`` (the background, when it is removed) show the picture dimmed.
    Given a plain (h, w) map instead (a road without patch tokens), the picture dimmed, with a note."""
    out = cv2.convertScaleAbs(image, alpha=DIMMED)
    if np.ndim(fused) != 3:
        cv2.putText(out, "PCA: no patch tokens here (torch backends only)", (8, 24), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5, (255, 255, 255), 1, cv2.LINE_AA)
        return out
    colours = grid_to_pixels((np.clip(fused, 0, 1) * 255 + 0.5).astype(np.uint8), image.shape[:2])
    cv2.copyTo(colours, _pixels(mask, image.shape), out)
    return out


OVERLAYS = tuple(_OVERLAYS)  # the built-in modes, in menu order
BOX_COLOUR = (48, 255, 48)  # RGB: the box of the mask's largest component


def draw_box(image: np.ndarray, box, colour=BOX_COLOUR) -> np.ndarray:
    """A copy of the picture with ``box`` [x0, y0, x1, y1] (x1, y1 exclusive, ``postprocess.largest_box``) drawn;
    the picture itself when ``box`` is None."""
    if box is None:
        return image
    out = image.copy()
    x0, y0, x1, y1 = (int(v) for v in box)
    cv2.rectangle(out, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), colour, line_width(image.shape))
    return out


SIMILARITY_ALPHA = 0.6  # how much of the similarity heatmap covers the picture


def patch_box(index: int, grid: tuple[int, int], size: tuple[int, ...]) -> list[int]:
    """[x0, y0, x1, y1] of patch ``index`` (row-major on ``grid``) in a picture of ``size`` (H, W) that the grid
    covers whole."""
    (h, w), (H, W) = grid, size[:2]
    i, j = divmod(int(index), w)
    return [round(j * W / w), round(i * H / h), round((j + 1) * W / w), round((i + 1) * H / h)]


def similarity_overlay(image: np.ndarray, similarity: np.ndarray, box=None) -> np.ndarray:
    """A patch-similarity map (h, w) as a heatmap over the picture, with the picked patch's ``box`` drawn
    when given (Photos, and Live on the frame the patch was picked on)."""
    return draw_box(overlay("heatmap", image, similarity, None, SIMILARITY_ALPHA), box)


def dim_cells(image: np.ndarray, cells: np.ndarray, amount: float = DIMMED) -> np.ndarray:
    """The picture with the patch-grid cells where ``cells`` is set dimmed to ``amount`` of their brightness."""
    out = image.copy()
    dimmed = cv2.convertScaleAbs(image, alpha=amount)
    cv2.copyTo(dimmed, _pixels(cells, image.shape), out)
    return out


# ============================================================================= panels and files
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


def stack(rows: list[np.ndarray], gap: int = 4) -> np.ndarray:
    """Rows of panels one above the other, padded white to the widest."""
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, gap), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(padded, axis=0)


def save_png(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)
    return path
