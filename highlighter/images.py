"""Finding and decoding photos, with a clear error for each file that cannot be read."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from highlighter.errors import ImageError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> tuple[list[Path], list[str]]:
    """Files stay as given; a folder means every image file in it (sorted, not recursive).

    Returns (files, problems): a missing path or a folder without images is a problem, not an error.
    """
    files: list[Path] = []
    problems: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(c for c in p.iterdir() if c.is_file() and c.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                problems.append(f"{p}: no images in this folder")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            problems.append(f"{p}: no such file or folder")
    return files, problems


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit and float grayscale: scale to 8 bits
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        if img.mode == "F":
            top = max(float(arr.max()), 1e-12)
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    return img if img.mode == "RGB" else img.convert("RGB")


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode a photo to 8-bit RGB, applying its EXIF orientation. Raises ImageError naming the problem."""
    p = Path(path)
    try:
        if p.is_file() and p.stat().st_size == 0:
            raise ImageError(f"{p}: empty file (0 bytes)")
        with Image.open(p) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
    except FileNotFoundError:
        raise ImageError(f"{p}: no such file") from None
    except UnidentifiedImageError:
        raise ImageError(f"{p}: not an image (unrecognised format)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        reason = str(e).splitlines()[0][:100] if str(e) else type(e).__name__
        raise ImageError(f"{p}: cannot decode image ({reason})") from None
