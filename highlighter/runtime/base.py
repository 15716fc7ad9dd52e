"""The predictor interface: an RGB uint8 frame in, a ``Prediction`` out. numpy + OpenCV only."""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Prediction:
    attention: np.ndarray  # (heads, h, w) float32: class-token attention over the patch grid
    preprocess_ms: float
    model_ms: float


def to_blob(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize and NCHW float32 in one OpenCV pass, RGB kept; the normalisation lives in the model."""
    H, W = size
    return cv2.dnn.blobFromImage(frame, 1.0, (W, H), swapRB=False, crop=False)


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
        blob = to_blob(frame, self.image_size)
        t1 = time.perf_counter()
        attn = self.run(blob)
        t2 = time.perf_counter()
        return Prediction(attn, (t1 - t0) * 1e3, (t2 - t1) * 1e3)
