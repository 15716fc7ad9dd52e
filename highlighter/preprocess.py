"""Preprocessing, named by purpose (numpy, PIL and OpenCV; no torch).

The attention road (``runtime.base.Predictor``: Photos, Live, `attention`, `video`, `eval`) resizes the whole
picture to the model's input size and hands the model pixels in [0, 255]; the model normalises them itself
(``core.attention.AttentionViT(pixels=True)``). Its ``preprocessing`` is a named choice of the resampler:

- ``official``: visualize_attention.py's resize, PIL bilinear (``official_pixels``). With the model's own /255
  and ImageNet normalisation, the numbers equal the script's ``Resize + ToTensor + Normalize`` bit for bit.
  The default of Photos, `attention` and `eval`.
- ``fast``: one ``cv2.dnn.blobFromImage`` pass (``fast``): OpenCV's bilinear reads the two nearest pixels per
  axis, PIL filters over the whole footprint when it shrinks a photo. The default of Live, `video` and
  `bench live`, on every backend.

Both see the same geometry at the same image size (``fit_size``): nothing is cropped, and the mask maps back onto
the whole picture.

Other paths:
- ``official``: visualize_attention.py's function itself (PIL bilinear resize, ToTensor, Normalize, a crop from the
  top-left to a multiple of the patch size), for the trainer's previews and probe and the reference pipeline
  that ``bench live`` measures against.
- ``official_mae``: the MAE demo notebook's path (PIL bicubic to the model's square input, float64 maths).
- ``davis``: eval_video_segmentation.py's ``read_frame`` (OpenCV bilinear to ``track_size``, its own std), for
  tracking (``highlighter track``).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image

from highlighter.defaults import IMAGE_SIZE

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The default image size, for every road (CLI, Photos, Live, `video`, `eval`): the photo's shorter side in
# pixels, its aspect ratio kept (``fit_size``).

_MEAN32 = np.array(IMAGENET_MEAN, np.float32)[:, None, None]
_STD32 = np.array(IMAGENET_STD, np.float32)[:, None, None]


# ============================================================================= sizes
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


def fit_size(shape: tuple[int, int], short: int, patch: int) -> tuple[int, int]:
    """(H, W) with the shorter side ``short`` and the photo's aspect ratio, both rounded to multiples of the
    patch, so that nothing is cropped and the mask maps back onto the whole photo."""
    H, W = shape[:2]
    scale = short / min(H, W)
    return max(patch, round(H * scale / patch) * patch), max(patch, round(W * scale / patch) * patch)


# ============================================================================= official
def normalise(rgb: np.ndarray) -> np.ndarray:
    """``ToTensor`` then ``Normalize`` with the ImageNet statistics: (H, W, 3) uint8 -> (3, H, W) float32."""
    x = np.ascontiguousarray(rgb.transpose(2, 0, 1)).astype(np.float32) / np.float32(255)
    return (x - _MEAN32) / _STD32


def unnormalise(x: np.ndarray) -> np.ndarray:
    """ImageNet-normalised (H, W, 3) -> RGB in [0, 1], clipped: what the MAE views show and are scored on."""
    return np.clip(x * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN), 0.0, 1.0)


def to_display(x: np.ndarray) -> np.ndarray:
    """Normalised (H, W, 3) -> uint8, as the MAE notebook's show_image: clip((x * std + mean) * 255)."""
    return (unnormalise(x) * 255).astype(np.uint8)


def resized_hw(img: Image.Image, image_size: int | Sequence[int] | None, patch: int) -> tuple[int, int]:
    """(H, W) that ``official`` resizes ``img`` to, before it crops to the patch grid."""
    if image_size is None:
        return fit_size((img.height, img.width), IMAGE_SIZE, patch)
    w, h = resized_size(img.width, img.height, image_size)
    return h, w


def official(img: Image.Image, image_size: int | Sequence[int] | None, patch: int) -> tuple[np.ndarray, np.ndarray]:
    """visualize_attention.py: PIL bilinear resize, ToTensor, Normalize, crop from the top-left to a multiple of
    the patch size. ``image_size``: None (the shorter side at IMAGE_SIZE, rounded: ``fit_size``), one int
    (the shorter side, as torchvision's ``Resize``) or (H, W). Returns (x (1, 3, H, W) float32, the resized and
    cropped RGB uint8 photo the model sees)."""
    h, w = resized_hw(img, image_size, patch)
    if w < patch or h < patch:
        raise ValueError(f"image size {h}x{w} is smaller than one {patch}-pixel patch")
    resized = img.resize((w, h), Image.BILINEAR) if (w, h) != img.size else img
    H, W = h - h % patch, w - w % patch
    shown = np.asarray(resized, dtype=np.uint8)
    return np.ascontiguousarray(normalise(shown)[None, :, :H, :W]), shown[:H, :W]


MAE_FITS = ("squash", "crop")  # the notebook's resize to a square (the default), or the centre square first


def centre_square(img: Image.Image) -> Image.Image:
    """The largest centred square of a photo."""
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return img.crop((left, top, left + s, top + s))


def official_mae(img: Image.Image, size: int, fit: str = "squash") -> np.ndarray:
    """The MAE demo notebook: PIL bicubic resize to the model's input size, /255, ImageNet normalisation
    (in float64, as numpy does there, then cast). Returns (1, 3, size, size) float32.

    ``fit="squash"`` is the notebook's (a wide photo is squeezed to the square); ``"crop"`` takes the centre
    square first, so shapes keep their proportions and the sides are lost."""
    if fit not in MAE_FITS:
        raise ValueError(f"unknown fit {fit!r}; choose from {', '.join(MAE_FITS)}")
    if fit == "crop":
        img = centre_square(img)
    arr = np.asarray(img.resize((size, size), Image.BICUBIC), dtype=np.float64) / 255.0
    arr = (arr - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    return np.ascontiguousarray(arr.transpose(2, 0, 1)[None]).astype(np.float32)


# ============================================================================= davis (tracking)
# eval_video_segmentation.py's color_normalize: its std starts with 0.228, not ImageNet's 0.229. Kept, to be the
# script's input.
DAVIS_STD = (0.228, 0.224, 0.225)
_DAVIS_STD32 = np.array(DAVIS_STD, np.float32)[:, None, None]


def track_size(shape: tuple[int, int], short: int | None = None) -> tuple[int, int]:
    """eval_video_segmentation.py's ``read_frame`` size for a frame of ``shape`` (H, W): the shorter side at
    ``short`` (None: the frame's own, which is the script's 480 on DAVIS 480p), the longer side scaled with it
    and rounded down to a multiple of 64. Returns (H, W). (For a square frame the script's ``read_seg`` swaps the
    two; here the label grid always follows the frame.)"""
    H, W = shape[:2]
    s = min(H, W) if short is None else int(short)
    if H > W:
        return int((s * H / W) // 64 * 64), s
    return s, int((s * W / H) // 64 * 64)


def davis(frame: np.ndarray, size: tuple[int, int], patch: int) -> np.ndarray:
    """An RGB uint8 frame -> (1, 3, H', W') float32 as eval_video_segmentation.py's ``read_frame``: OpenCV's
    bilinear resize to ``size`` (H, W), /255, mean (0.485, 0.456, 0.406) and std ``DAVIS_STD``; then cropped from
    the top-left to the patch grid (the script's patch embedding ignores the same remainder)."""
    H, W = size
    if H < patch or W < patch:
        raise ValueError(f"tracking size {H}x{W} is smaller than one {patch}-pixel patch")
    img = cv2.resize(frame, (W, H)) if frame.shape[:2] != (H, W) else frame
    x = img.astype(np.float32) / np.float32(255.0)
    x = (x.transpose(2, 0, 1) - _MEAN32) / _DAVIS_STD32
    return np.ascontiguousarray(x[None, :, : H - H % patch, : W - W % patch])


# ============================================================================= fast
def fast(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An RGB uint8 frame -> (1, 3, H, W) float32 in [0, 255], resized in one OpenCV pass. The model the blob
    goes to normalises it (``AttentionViT(pixels=True)``)."""
    H, W = size
    return cv2.dnn.blobFromImage(frame, 1.0, (W, H), swapRB=False, crop=False)


def official_pixels(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An RGB uint8 frame -> (1, 3, H, W) float32 in [0, 255], resized whole to ``size`` (H, W) as
    visualize_attention.py resizes: PIL bilinear. ToTensor and Normalize are the model's (``AttentionViT(pixels=
    True)``), so the pair computes ``official``'s numbers without its crop."""
    H, W = size
    img = Image.fromarray(np.ascontiguousarray(frame))
    if img.size != (W, H):
        img = img.resize((W, H), Image.BILINEAR)
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)[None], dtype=np.float32)


PREPROCESSING = {"official": official_pixels, "fast": fast}  # the road's named choice: a frame and (H, W) -> blob
