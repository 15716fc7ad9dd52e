"""The official augmentations, driven by an explicit ``random.Random`` per sample.

Each sample's randomness is seeded from (seed, epoch, index), so a batch is the same whichever worker
process builds it, whether the run was resumed, and however many processes share the epoch.
"""

from __future__ import annotations

import math
import random

import torch
import torchvision.transforms.functional as TF
from PIL import Image, ImageFilter, ImageOps

from highlighter.core.transforms import to_uint8_tensor


def random_resized_crop(img: Image.Image, rng: random.Random, size: int, scale: tuple[float, float],
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Image.Image:
    """torchvision RandomResizedCrop (10 tries, then a centre crop), bicubic, with our RNG."""
    width, height = img.size
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            i, j = rng.randint(0, height - h), rng.randint(0, width - w)
            break
    else:
        in_ratio = width / height
        if in_ratio < min(ratio):
            w, h = width, int(round(width / min(ratio)))
        elif in_ratio > max(ratio):
            h, w = height, int(round(height * max(ratio)))
        else:
            w, h = width, height
        i, j = (height - h) // 2, (width - w) // 2
    return img.resize((size, size), Image.BICUBIC, box=(j, i, j + w, i + h))


def flip_and_color_jitter(img: Image.Image, rng: random.Random) -> Image.Image:
    """Horizontal flip (p 0.5); ColorJitter(0.4, 0.4, 0.2, 0.1) in random order (p 0.8); grayscale (p 0.2)."""
    if rng.random() < 0.5:
        img = ImageOps.mirror(img)
    if rng.random() < 0.8:
        ops = [0, 1, 2, 3]
        rng.shuffle(ops)
        b, c, s, h = rng.uniform(0.6, 1.4), rng.uniform(0.6, 1.4), rng.uniform(0.8, 1.2), rng.uniform(-0.1, 0.1)
        for op in ops:
            if op == 0:
                img = TF.adjust_brightness(img, b)
            elif op == 1:
                img = TF.adjust_contrast(img, c)
            elif op == 2:
                img = TF.adjust_saturation(img, s)
            else:
                img = TF.adjust_hue(img, h)
    if rng.random() < 0.2:
        img = img.convert("L").convert("RGB")
    return img


def gaussian_blur(img: Image.Image, rng: random.Random, p: float, scale: float = 1.0) -> Image.Image:
    """DINO's GaussianBlur: with probability p, a PIL Gaussian blur of radius U(0.1, 2) (times ``scale``)."""
    if rng.random() <= p:
        img = img.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.1, 2.0) * scale))
    return img


def solarize(img: Image.Image, rng: random.Random, p: float) -> Image.Image:
    return ImageOps.solarize(img) if rng.random() < p else img


class DinoMultiCrop:
    """DataAugmentationDINO: 2 global crops (blur p 1.0 and p 0.1 + solarize p 0.2) and N local crops
    (blur p 0.5), each with flip and colour jitter, as uint8 tensors (normalised in the training step:
    a quarter of the bytes to move between processes and to the GPU)."""

    def __init__(self, global_size=224, local_size=96, global_scale=(0.4, 1.0), local_scale=(0.05, 0.4),
                 local_number=8, relative_blur=False):
        self.global_size, self.local_size, self.local_number = global_size, local_size, local_number
        self.global_scale, self.local_scale = tuple(global_scale), tuple(local_scale)
        # DINO's blur radius U(0.1, 2) is in pixels of 224-px global and 96-px local crops; relative_blur keeps
        # the same blur relative to the crop when crops are smaller (a 2-px radius wipes out a 64-px crop)
        self.global_blur = global_size / 224 if relative_blur else 1.0
        self.local_blur = local_size / 96 if relative_blur else 1.0

    @property
    def ncrops(self) -> int:
        return 2 + self.local_number

    def __call__(self, img: Image.Image, rng: random.Random) -> list[torch.Tensor]:
        g1 = gaussian_blur(flip_and_color_jitter(
            random_resized_crop(img, rng, self.global_size, self.global_scale), rng), rng, 1.0, self.global_blur)
        g2 = random_resized_crop(img, rng, self.global_size, self.global_scale)
        g2 = solarize(gaussian_blur(flip_and_color_jitter(g2, rng), rng, 0.1, self.global_blur), rng, 0.2)
        crops = [g1, g2]
        for _ in range(self.local_number):
            c = random_resized_crop(img, rng, self.local_size, self.local_scale)
            crops.append(gaussian_blur(flip_and_color_jitter(c, rng), rng, 0.5, self.local_blur))
        return [to_uint8_tensor(c) for c in crops]


class MaeCrop:
    """main_pretrain.py's transform: RandomResizedCrop(scale 0.2-1, bicubic), horizontal flip (uint8; normalised
    in the training step); plus the masking noise of the sample, drawn from the same per-sample seed."""

    def __init__(self, size=224, scale=(0.2, 1.0), num_patches=196):
        self.size, self.scale, self.num_patches = size, tuple(scale), num_patches

    def __call__(self, img: Image.Image, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
        img = random_resized_crop(img, rng, self.size, self.scale)
        if rng.random() < 0.5:
            img = ImageOps.mirror(img)
        gen = torch.Generator().manual_seed(rng.getrandbits(63))
        return to_uint8_tensor(img), torch.rand(self.num_patches, generator=gen)
