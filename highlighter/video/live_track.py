"""Tracking what the user points at in a stream (the Live tab), without Qt: a click or a box on a frame picks
patches (``features.similar_region``, ``features.box_patches``), and each later frame's mask is propagated from
the kept context by DINO's label propagation (``core.propagation``), as ``highlighter track`` does from a mask file.

A ``LiveTracker`` is made on the GUI thread from the picked frame's kept patch tokens (numpy only: no model call);
``step`` runs on the stream's inference thread (``video.pipeline.FramePipeline.tracker``), which imports torch
there. The pipeline only calls ``step``: it does not import this module, so the ONNX Runtime road stays torch-free.
"""

from __future__ import annotations

import numpy as np

from highlighter.defaults import TRACK_N_LAST, TRACK_NEIGHBOURHOOD, TRACK_TEMPERATURE, TRACK_TOPK
from highlighter.features import box_patches, similar_region


class SelectionError(ValueError):
    """A pick that cannot start tracking; the message is for the user."""


def check_selection(selection: np.ndarray) -> np.ndarray:
    """The picked patches (h, w) bool, or SelectionError when they are none or all (nothing to tell apart)."""
    sel = np.asarray(selection, bool)
    n = int(sel.sum())
    if n == 0:
        raise SelectionError("the selection holds no patch (a box must hold at least one patch centre): draw a "
                             "larger box, or click on the object")
    if n == sel.size:
        raise SelectionError("the selection covers the whole frame, so nothing is left to tell it apart from: "
                             "draw a smaller box, or raise the click similarity")
    return sel


def select_click(tokens: np.ndarray, grid: tuple[int, int], index: int, threshold: float) -> np.ndarray:
    """A click on patch ``index``: the 4-connected region of patches at least ``threshold`` cosine-similar."""
    return check_selection(similar_region(tokens, index, grid, threshold))


def select_box(box, grid: tuple[int, int], size: tuple[int, ...]) -> np.ndarray:
    """A box [x0, y0, x1, y1] in the frame's pixels (frame (H, W) = ``size``): the patches centred inside."""
    return check_selection(box_patches(box, grid, size))


class LiveTracker:
    """One picked object and its context: the picked frame (its tokens and the selection) and the last ``n_last``
    frames with their propagated labels (background and object). ``step(tokens, grid, size)`` gives the next
    frame's mask at its size (H, W) bool, or None when the frame's patch grid is not the picked one's (the
    stream changed size: the pick does not apply)."""

    def __init__(self, tokens: np.ndarray, grid: tuple[int, int], selection: np.ndarray, patch: int,
                 n_last: int = TRACK_N_LAST, neighbourhood: int = TRACK_NEIGHBOURHOOD, topk: int = TRACK_TOPK,
                 temperature: float = TRACK_TEMPERATURE):
        h, w = grid
        tokens = np.asarray(tokens, np.float32)
        if tokens.ndim != 2 or tokens.shape[0] != h * w:
            raise ValueError(f"tokens {tokens.shape} do not fit the {h}x{w} patch grid")
        self.selection = check_selection(selection)
        if self.selection.shape != (h, w):
            raise ValueError(f"the selection {self.selection.shape} is not on the {h}x{w} patch grid")
        self.grid, self.patch = (h, w), patch
        self.cfg = (n_last, neighbourhood, topk, temperature)
        self._first = tokens.reshape(h, w, -1).copy()
        self.context = None  # core.propagation.LabelPropagation, made by the first step (its thread)
        self.frames = 0  # frames propagated

    @property
    def patches(self) -> int:
        return int(self.selection.sum())

    def step(self, tokens: np.ndarray, grid: tuple[int, int], size: tuple[int, int]) -> np.ndarray | None:
        import torch

        from highlighter.core.propagation import LabelPropagation, PropagationCfg, one_hot, upsample_labels

        if tuple(grid) != self.grid or tokens.shape[0] != grid[0] * grid[1] or tokens.shape[1] != self._first.shape[-1]:
            return None  # another grid or another model's token width: the pick does not apply
        if self.context is None:
            self.context = LabelPropagation(PropagationCfg(*self.cfg))
            self.context.start(torch.from_numpy(self._first), one_hot(self.selection.astype(np.uint8), 2))
        target = torch.from_numpy(np.asarray(tokens, np.float32).reshape(*self.grid, -1))
        soft = self.context.step(target)
        self.frames += 1
        return upsample_labels(soft, self.patch, tuple(size[:2])) == 1
