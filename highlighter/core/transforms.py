"""Torch faces of ``highlighter.preprocess`` (where the preprocessing is written, once, in numpy), and the
uint8 -> normalised step that training runs on its device."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from highlighter.preprocess import IMAGENET_MEAN, IMAGENET_STD, official, official_mae, resized_size
from highlighter.preprocess import normalise as _normalise

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "dino_preprocess", "mae_preprocess", "normalise", "resized_size",
           "to_normalised_tensor", "to_uint8_tensor"]


def to_uint8_tensor(img: Image.Image) -> torch.Tensor:
    """(3, H, W) uint8, channels first."""
    return torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1).contiguous()


def normalise(x: torch.Tensor) -> torch.Tensor:
    """``ToTensor`` then ``Normalize`` for uint8 (..., 3, H, W) batches on any device (training)."""
    x = x.to(torch.float32).div(255)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=x.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=x.device)[:, None, None]
    return x.sub_(mean).div_(std)


def to_normalised_tensor(img: Image.Image) -> torch.Tensor:
    """``preprocess.normalise`` as a (3, H, W) float32 tensor."""
    return torch.from_numpy(_normalise(np.asarray(img, dtype=np.uint8)))


def dino_preprocess(img: Image.Image, image_size: int | Sequence[int] | None, patch_size: int):
    """``preprocess.official`` with the input as a tensor: (tensor (1, 3, H, W), RGB uint8 photo shown)."""
    x, shown = official(img, image_size, patch_size)
    return torch.from_numpy(x), shown


def mae_preprocess(img: Image.Image, size: int) -> torch.Tensor:
    """``preprocess.official_mae`` as a (1, 3, size, size) float32 tensor."""
    return torch.from_numpy(official_mae(img, size))
