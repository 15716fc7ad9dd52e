"""The predictor interface: an RGB uint8 frame in (``preprocess.fast``), a ``Prediction`` out. numpy + OpenCV
only."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from highlighter.preprocess import fast


@dataclass
class Prediction:
    attention: np.ndarray  # (heads, h, w) float32: class-token attention over the patch grid
    preprocess_ms: float
    model_ms: float
    tokens: np.ndarray | None = None  # (h*w, D) final-norm output patch tokens, when asked for and given
    keys: np.ndarray | None = None  # (h*w, D) the last block's patch keys, likewise (patch similarity)


class Predictor:
    """Base class: subclasses set name, image_size (H, W), patch_size, num_heads and implement ``run``."""

    name = "predictor"
    image_size: tuple[int, int] = (224, 224)
    patch_size = 16
    num_heads = 1
    supports_tokens = False  # whether ``run_tokens`` exists: the PCA overlay needs the patch tokens
    supports_keys = False  # whether ``run_features`` exists: tokens and keys, for the patch similarity

    def run(self, blob: np.ndarray) -> np.ndarray:  # (1, 3, H, W) float32 [0, 255] -> (heads, h, w)
        raise NotImplementedError

    def run_tokens(self, blob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(attention (heads, h, w), patch tokens (h*w, D)) from one pass."""
        raise NotImplementedError(f"{self.name} gives no patch tokens")

    def run_features(self, blob: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(attention, patch tokens (h*w, D), last-block patch keys (h*w, D)) from one pass."""
        raise NotImplementedError(f"{self.name} gives no patch features")

    def __call__(self, frame: np.ndarray, tokens: bool = False, keys: bool = False) -> Prediction:
        t0 = time.perf_counter()
        blob = fast(frame, self.image_size)
        t1 = time.perf_counter()
        toks = ks = None
        if keys and self.supports_keys:
            attn, toks, ks = self.run_features(blob)
        elif tokens and self.supports_tokens:
            attn, toks = self.run_tokens(blob)
        else:
            attn = self.run(blob)
        t2 = time.perf_counter()
        return Prediction(attn, (t1 - t0) * 1e3, (t2 - t1) * 1e3, toks, ks)
