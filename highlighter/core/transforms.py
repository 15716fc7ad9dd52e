"""Preprocessing exactly as the official scripts do it (PIL in, normalised tensors out)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resized_size(width: int, height: int, image_size: int | Sequence[int]) -> tuple[int, int]:
    """torchvision ``Resize`` semantics -> (new_width, new_height).

    Two ints are (H, W); one int sets the shorter side and keeps the aspect ratio (long side truncated).
    """
    if isinstance(image_size, int) or len(image_size) == 1:
        s = image_size if isinstance(image_size, int) else int(image_size[0])
        if width <= height:
            return s, int(s * height / width)
        return int(s * width / height), s
    h, w = image_size
    return int(w), int(h)


def to_uint8_tensor(img: Image.Image) -> torch.Tensor:
    """(3, H, W) uint8, channels first."""
    return torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1).contiguous()


def normalise(x: torch.Tensor) -> torch.Tensor:
    """``ToTensor`` then ``Normalize`` with the ImageNet statistics, for uint8 (..., 3, H, W) on any device."""
    x = x.to(torch.float32).div(255)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=x.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=x.device)[:, None, None]
    return x.sub_(mean).div_(std)


def to_normalised_tensor(img: Image.Image) -> torch.Tensor:
    """``ToTensor`` then ``Normalize`` with the ImageNet statistics: (3, H, W) float32."""
    return normalise(to_uint8_tensor(img))


def dino_preprocess(img: Image.Image, image_size: int | Sequence[int], patch_size: int):
    """visualize_attention.py: PIL bilinear resize, ToTensor, Normalize, crop from the top-left to a
    multiple of the patch size. Returns (tensor (1, 3, H, W), the resized and cropped RGB uint8 image)."""
    w, h = resized_size(img.width, img.height, image_size)
    if w < patch_size or h < patch_size:
        raise ValueError(f"image size {h}x{w} is smaller than one {patch_size}-pixel patch")
    resized = img.resize((w, h), Image.BILINEAR) if (w, h) != img.size else img
    x = to_normalised_tensor(resized)
    H, W = h - h % patch_size, w - w % patch_size
    return x[None, :, :H, :W], np.asarray(resized)[:H, :W]


def mae_preprocess(img: Image.Image, size: int) -> torch.Tensor:
    """The MAE demo notebook: PIL bicubic resize to the model's input size, /255, ImageNet normalisation
    (computed in float64, as numpy does there, then cast). Returns (1, 3, size, size) float32."""
    arr = np.asarray(img.resize((size, size), Image.BICUBIC), dtype=np.float64) / 255.0
    arr = (arr - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    return torch.from_numpy(arr).permute(2, 0, 1)[None].float()
