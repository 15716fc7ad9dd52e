"""Temporal smoothing of the live masks against flicker (numpy, on the patch grid)."""

from __future__ import annotations

import numpy as np

from highlighter.postprocess import mass_mask


class Smoother:
    """An EMA of the fused attention map, and hysteresis on the mask: a patch joins when its smoothed map is
    in the top ``threshold`` mass, and leaves only when it falls out of the wider top ``threshold + margin``."""

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
        strict = mass_mask(self.state, threshold)
        if self.mask is None:
            self.mask = strict
        else:
            loose = mass_mask(self.state, min(1.0, threshold + self.margin))
            self.mask = strict | (self.mask & loose)
        return self.state, self.mask
