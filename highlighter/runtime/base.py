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


class Predictor:
    """Base class: subclasses set name, image_size (H, W), patch_size, num_heads and implement ``run``."""

    name = "predictor"
    image_size: tuple[int, int] = (224, 224)
    patch_size = 16
    num_heads = 1

    def run(self, blob: np.ndarray) -> np.ndarray:  # (1, 3, H, W) float32 [0, 255] -> (heads, h, w)
        raise NotImplementedError

    def __call__(self, frame: np.ndarray) -> Prediction:
        t0 = time.perf_counter()
        blob = fast(frame, self.image_size)
        t1 = time.perf_counter()
        attn = self.run(blob)
        t2 = time.perf_counter()
        return Prediction(attn, (t1 - t0) * 1e3, (t2 - t1) * 1e3)
