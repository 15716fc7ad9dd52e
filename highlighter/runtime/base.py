"""The predictor interface: an RGB uint8 frame in, a ``Prediction`` out; the step every road shares (Photos, Live,
`attention`, `video`, `eval`). numpy + OpenCV only."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from highlighter.defaults import IMAGE_SIZE, LIVE_PREPROCESSING
from highlighter.preprocess import PREPROCESSING, fit_size


def check_preprocessing(name: str) -> str:
    """``name`` when it is one of ``preprocess.PREPROCESSING``'s, else a ValueError that lists them."""
    if name not in PREPROCESSING:
        raise ValueError(f"unknown preprocessing {name!r}; choose from {', '.join(PREPROCESSING)}")
    return name


@dataclass
class Prediction:
    attention: np.ndarray  # (heads, h, w) float32: class-token attention over the patch grid
    preprocess_ms: float
    model_ms: float
    tokens: np.ndarray | None = None  # (h*w, D) final-norm output patch tokens, when asked for and given
    keys: np.ndarray | None = None  # (h*w, D) the last block's patch keys, likewise (patch similarity)


class Predictor:
    """Base class: subclasses set name, image_size (H, W), patch_size, num_heads and implement ``run``.

    ``preprocessing``: how a frame becomes the model's input, ``official`` or ``fast`` (``preprocess``). ``image_size``
    None: each picture is fed at its own size, its shorter side at ``short`` and its aspect kept (``fit_size``);
    a predictor with a fixed graph has one (H, W)."""

    name = "predictor"
    image_size: tuple[int, int] | None = (224, 224)
    short = IMAGE_SIZE
    preprocessing = LIVE_PREPROCESSING
    patch_size = 16
    num_heads = 1
    supports_tokens = False  # whether ``run_tokens`` exists: the PCA overlay needs the patch tokens
    supports_keys = False  # whether ``run_features`` exists: tokens and keys, for the patch similarity

    def size_for(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """The model input (H, W) for a picture of ``shape`` (H, W[, 3])."""
        if self.image_size is not None:
            return tuple(self.image_size)
        return fit_size(shape[:2], self.short, self.patch_size)

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
        blob = PREPROCESSING[self.preprocessing](frame, self.size_for(frame.shape))
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
