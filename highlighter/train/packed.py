"""Training data for a machine with a GPU: packed small enough to carry, decoded once, augmented on the device.

- :func:`pack_images` writes the photos of some folders into one uncompressed zip of JPEGs, each resized so that
  its longer side is at most ``max_side`` (photos already that small keep their bytes). A zip costs ~100 bytes a
  photo (a tar 768), so Tiny ImageNet's 20,200 photos of ~2 KB and the scene photos at 128 px fit in ~50 MB.
- A ``.zip`` given to ``--data`` is read in place (:class:`PackedImages`), by the usual loader or by
- :class:`ImageBank`: every photo decoded once into one uint8 tensor (N, 3, S, S) (shorter side resized to S,
  centre crop) that lives on the training device, and
- :class:`TensorMultiCrop`: DINO's multi-crop augmentation (random resized crops, flip, colour jitter in random
  order, grayscale, Gaussian blur, solarisation) as batched tensor operations, so that a GPU is not left waiting
  for CPU workers. Its randomness comes from a ``torch.Generator`` seeded per step, so a resumed run is the same.

The batched crops are bilinear (``roi_align``) rather than PIL's bicubic; every other operation follows
torchvision's definitions (see ``highlighter.train.augment`` for the PIL originals).
"""

from __future__ import annotations

import io
import math
import os
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from highlighter.errors import HighlighterError, ImageError
from highlighter.images import IMAGE_EXTENSIONS, load_rgb


# ============================================================================= finding the photos
def find_training_images(dirs: Iterable[str | os.PathLike], flag: str = "--data") -> list:
    """Every image under the folders (any depth, no class sub-folders needed), sorted, and every photo of the
    packed ``.zip`` files given (``PackedRef``). Errors before anything starts when a folder is missing or
    nothing is found, naming ``flag`` (the command's name for the folders)."""
    files: list = []
    for d in dirs:
        d = Path(d)
        if d.is_file() and d.suffix.lower() == ".zip":  # a pack written by `highlighter pack`
            files.extend(PackedImages.refs(str(d)))
            continue
        if not d.is_dir():
            raise HighlighterError(f"{flag} {d}: no such folder")
        found = sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not found:
            raise HighlighterError(f"{flag} {d}: no images found (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
        files.extend(found)
    return files



# ============================================================================= packing
def pack_images(folders: list[str | os.PathLike], out: str | os.PathLike, max_side: int = 128,
                quality: int = 90, fmt: str = "jpeg") -> dict:
    """Write every photo under ``folders`` into the zip ``out`` (stored, written atomically). Returns a summary.

    ``fmt`` jpeg: JPEGs no larger than ``max_side`` keep their bytes, others are re-encoded; webp: every photo is
    re-encoded as WebP (a 64-px photo's JPEG spends ~600 of its ~1,900 bytes on tables; WebP at quality 80 takes
    ~1,500 in all), for when the pack must be as small as possible."""
    if fmt not in ("jpeg", "webp"):
        raise HighlighterError(f"unknown pack format {fmt!r}: jpeg or webp")
    from highlighter.fileio import atomic_write

    files = find_training_images(folders, flag="pack")
    summary = {"images": 0, "kept": 0, "resized": 0, "unreadable": 0, "bytes": 0}

    def write(tmp):
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as pack:
            for i, path in enumerate(tqdm(files, desc="pack", unit="img", disable=None)):
                try:
                    img = load_rgb(path)
                except ImageError:
                    summary["unreadable"] += 1
                    continue
                if fmt == "jpeg" and max(img.size) <= max_side and path.suffix.lower() in (".jpg", ".jpeg"):
                    data = path.read_bytes()
                    summary["kept"] += 1
                else:
                    scale = max_side / max(img.size)
                    if scale < 1:
                        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                                         Image.BICUBIC)
                    buf = io.BytesIO()
                    img.save(buf, fmt.upper(), quality=quality)
                    data = buf.getvalue()
                    summary["resized"] += 1
                pack.writestr(f"{i:07d}.{'jpg' if fmt == 'jpeg' else 'webp'}", data)
                summary["images"] += 1

    atomic_write(Path(out), write)
    summary["bytes"] = Path(out).stat().st_size
    return summary


@dataclass(frozen=True)
class PackedRef:
    """One photo inside a pack."""

    pack: str
    index: int

    @property
    def name(self) -> str:
        return f"{Path(self.pack).name}[{self.index}]"


class PackedImages:
    """Random access to the JPEGs of a zip written by :func:`pack_images` (any zip of images works). Each process
    opens the file once (data-loader workers are forked)."""

    _open: dict[tuple[str, int], zipfile.ZipFile] = {}
    _names: dict[str, list[str]] = {}

    @classmethod
    def members(cls, pack: str) -> list[str]:
        if pack not in cls._names:
            try:
                with zipfile.ZipFile(pack) as z:
                    cls._names[pack] = [n for n in z.namelist() if Path(n).suffix.lower() in IMAGE_EXTENSIONS]
            except (OSError, zipfile.BadZipFile) as e:
                raise HighlighterError(f"--data {pack}: not a readable zip of images ({e})") from None
            if not cls._names[pack]:
                raise HighlighterError(f"--data {pack}: the zip holds no images")
        return cls._names[pack]

    @classmethod
    def refs(cls, pack: str) -> list[PackedRef]:
        return [PackedRef(str(pack), i) for i in range(len(cls.members(str(pack))))]

    @classmethod
    def load(cls, ref: PackedRef) -> Image.Image:
        name = cls.members(ref.pack)[ref.index]
        key = (ref.pack, os.getpid())
        z = cls._open.get(key)
        if z is None:
            z = cls._open[key] = zipfile.ZipFile(ref.pack)
        try:
            with Image.open(io.BytesIO(z.read(name))) as img:
                img.load()
                return img.convert("RGB")
        except (OSError, ValueError, SyntaxError, zipfile.BadZipFile) as e:
            raise ImageError(f"{ref.name}: cannot decode image ({str(e)[:80]})") from None


def load_source(item) -> Image.Image:
    """A training photo: a path on disk or a photo inside a pack."""
    return PackedImages.load(item) if isinstance(item, PackedRef) else load_rgb(item)


# ============================================================================= decoded once, on the device
def _square(item, size: int) -> np.ndarray | None:
    try:
        img = load_source(item)
    except ImageError:
        return None
    s = size / min(img.size)
    w, h = max(size, round(img.width * s)), max(size, round(img.height * s))
    img = img.resize((w, h), Image.BICUBIC)
    x0, y0 = (w - size) // 2, (h - size) // 2
    return np.asarray(img.crop((x0, y0, x0 + size, y0 + size)), dtype=np.uint8)


class ImageBank:
    """Every training photo as one uint8 tensor (N, 3, size, size): shorter side resized to ``size``, centre crop.
    Unreadable photos are left out (``self.skipped`` counts them)."""

    def __init__(self, items: list, size: int, device: torch.device | str = "cpu", workers: int = 0):
        workers = workers or min(16, os.cpu_count() or 1)
        arrays = []
        if workers > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(workers) as pool:
                for a in tqdm(pool.map(_square, items, [size] * len(items), chunksize=64), total=len(items),
                              desc="decode", unit="img", disable=None):
                    arrays.append(a)
        else:
            arrays = [_square(it, size) for it in tqdm(items, desc="decode", unit="img", disable=None)]
        good = [a for a in arrays if a is not None]
        if not good:
            raise HighlighterError("none of the training photos could be decoded")
        self.skipped = len(arrays) - len(good)
        self.images = torch.from_numpy(np.stack(good)).permute(0, 3, 1, 2).contiguous().to(device)
        self.size = size

    def __len__(self) -> int:
        return self.images.shape[0]


# ============================================================================= batched augmentation
def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """torchvision's _rgb2hsv for (B, 3, H, W) in [0, 1]."""
    r, g, b = x.unbind(1)
    maxc, minc = x.max(1).values, x.min(1).values
    eqc = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    cr_div = torch.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / cr_div, (maxc - g) / cr_div, (maxc - b) / cr_div
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return torch.stack((h, s, maxc), dim=1)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """torchvision's _hsv2rgb."""
    h, s, v = x.unbind(1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.to(torch.int32) % 6
    p = (v * (1.0 - s)).clamp(0.0, 1.0)
    q = (v * (1.0 - s * f)).clamp(0.0, 1.0)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0)
    mask = i.unsqueeze(1) == torch.arange(6, device=i.device).view(-1, 1, 1)
    a1 = torch.stack((v, q, p, p, t, v), dim=1)
    a2 = torch.stack((t, v, v, q, p, p), dim=1)
    a3 = torch.stack((p, p, t, v, v, q), dim=1)
    a4 = torch.stack((a1, a2, a3), dim=1)  # (B, 3, 6, H, W)
    return torch.einsum("bjhw,bcjhw->bchw", mask.to(x.dtype), a4)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """Luma with torchvision's rgb_to_grayscale weights (0.2989, 0.587, 0.114): (B, 1, H, W)."""
    return (0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def _blend(a: torch.Tensor, b: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    return (ratio * a + (1.0 - ratio) * b).clamp(0.0, 1.0)


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator, device) -> torch.Tensor:
    return (lo + (hi - lo) * torch.rand(n, generator=gen, device=gen.device)).to(device)


def color_jitter(x: torch.Tensor, factors: list[torch.Tensor], order: torch.Tensor) -> torch.Tensor:
    """ColorJitter(0.4, 0.4, 0.2, 0.1) with per-sample factors (brightness, contrast, saturation, hue; each (B,))
    applied in a per-sample order (B, 4) of op indices, each op as torchvision defines it for tensors."""
    for k in range(4):
        for op in range(4):
            sel = (order[:, k] == op).view(-1, 1, 1, 1)
            if not bool(sel.any()):
                continue
            f = factors[op].view(-1, 1, 1, 1).to(x.dtype)
            if op == 0:
                y = (x * f).clamp(0.0, 1.0)
            elif op == 1:
                y = _blend(x, _gray(x).mean(dim=(-3, -2, -1), keepdim=True), f)
            elif op == 2:
                y = _blend(x, _gray(x), f)
            else:
                hsv = _rgb_to_hsv(x)
                y = _hsv_to_rgb(torch.cat((torch.fmod(hsv[:, :1] + f + 1.0, 1.0), hsv[:, 1:]), dim=1))
            x = torch.where(sel, y, x)
    return x


class TensorMultiCrop:
    """DataAugmentationDINO on a batch of uint8 images (B, 3, S, S) on any device; returns the 2 + N crops as
    float tensors in [0, 255] (``normalise`` then applies the ImageNet statistics)."""

    def __init__(self, global_size=224, local_size=96, global_scale=(0.4, 1.0), local_scale=(0.05, 0.4),
                 local_number=8, relative_blur=False):
        self.global_size, self.local_size, self.local_number = global_size, local_size, local_number
        self.global_scale, self.local_scale = tuple(global_scale), tuple(local_scale)
        self.global_blur = global_size / 224 if relative_blur else 1.0
        self.local_blur = local_size / 96 if relative_blur else 1.0

    def boxes(self, n: int, side: int, scale, gen) -> torch.Tensor:
        """RandomResizedCrop boxes (x0, y0, x1, y1) in pixels: area U(scale), log aspect U(log 3/4, log 4/3),
        clipped to the image (torchvision retries 10 times, then centres; here the box is clamped)."""
        area = side * side * _uniform(n, scale[0], scale[1], gen, "cpu")
        aspect = torch.exp(_uniform(n, math.log(3 / 4), math.log(4 / 3), gen, "cpu"))
        w = torch.sqrt(area * aspect).clamp(1.0, side)
        h = torch.sqrt(area / aspect).clamp(1.0, side)
        x0 = (side - w) * torch.rand(n, generator=gen, device=gen.device).cpu()
        y0 = (side - h) * torch.rand(n, generator=gen, device=gen.device).cpu()
        return torch.stack((x0, y0, x0 + w, y0 + h), dim=1)

    def crop(self, x: torch.Tensor, size: int, scale, gen, boxes: torch.Tensor | None = None) -> torch.Tensor:
        from torchvision.ops import roi_align

        b, side = x.shape[0], x.shape[-1]
        boxes = (self.boxes(b, side, scale, gen) if boxes is None else boxes).to(x.device)
        rois = torch.cat((torch.arange(b, device=x.device, dtype=x.dtype)[:, None], boxes.to(x.dtype)), dim=1)
        # adaptive sampling (ceil(bin size) points a bin): antialiased when shrinking, exact for a 1:1 box
        return roi_align(x, rois, output_size=size, spatial_scale=1.0, sampling_ratio=0, aligned=True)

    def flip_and_color_jitter(self, x: torch.Tensor, gen) -> torch.Tensor:
        b, dev = x.shape[0], x.device
        flip = (_uniform(b, 0, 1, gen, dev) < 0.5).view(-1, 1, 1, 1)
        x = torch.where(flip, x.flip(-1), x)
        apply = (_uniform(b, 0, 1, gen, dev) < 0.8).view(-1, 1, 1, 1)
        factors = [_uniform(b, 0.6, 1.4, gen, dev), _uniform(b, 0.6, 1.4, gen, dev), _uniform(b, 0.8, 1.2, gen, dev),
                   _uniform(b, -0.1, 0.1, gen, dev)]
        order = torch.argsort(torch.rand(b, 4, generator=gen, device=gen.device), dim=1).to(dev)  # random order
        x = torch.where(apply, color_jitter(x, factors, order), x)
        gray = (_uniform(b, 0, 1, gen, dev) < 0.2).view(-1, 1, 1, 1)
        return torch.where(gray, _gray(x).expand_as(x), x)

    def blur(self, x: torch.Tensor, p: float, scale: float, gen) -> torch.Tensor:
        """PIL's GaussianBlur(radius) is a Gaussian of sigma = radius; a per-sample separable convolution."""
        b, c, h, w = x.shape
        dev = x.device
        on = _uniform(b, 0, 1, gen, dev) <= p
        sigma = _uniform(b, 0.1, 2.0, gen, dev) * scale
        if not bool(on.any()):
            return x
        r = max(1, int(math.ceil(3 * float(sigma.max()))))
        t = torch.arange(-r, r + 1, device=dev, dtype=x.dtype)
        k = torch.exp(-0.5 * (t[None] / sigma[:, None]) ** 2)
        k = k / k.sum(1, keepdim=True)  # (b, 2r+1)
        kk = k.repeat_interleave(c, 0)  # (b*c, 2r+1)
        y = torch.nn.functional.pad(x.reshape(1, b * c, h, w), (r, r, r, r), mode="reflect")
        y = torch.nn.functional.conv2d(y, kk.view(b * c, 1, 1, -1), groups=b * c)
        y = torch.nn.functional.conv2d(y, kk.view(b * c, 1, -1, 1), groups=b * c).view(b, c, h, w)
        return torch.where(on.view(-1, 1, 1, 1), y, x)

    def solarize(self, x: torch.Tensor, p: float, gen) -> torch.Tensor:
        on = (_uniform(x.shape[0], 0, 1, gen, x.device) < p).view(-1, 1, 1, 1)
        return torch.where(on & (x >= 128 / 255), 1.0 - x, x)

    def __call__(self, images: torch.Tensor, gen: torch.Generator) -> list[torch.Tensor]:
        x = images.float() / 255.0
        g1 = self.blur(self.flip_and_color_jitter(self.crop(x, self.global_size, self.global_scale, gen), gen), 1.0,
                       self.global_blur, gen)
        g2 = self.crop(x, self.global_size, self.global_scale, gen)
        g2 = self.solarize(self.blur(self.flip_and_color_jitter(g2, gen), 0.1, self.global_blur, gen), 0.2, gen)
        crops = [g1, g2]
        for _ in range(self.local_number):
            c = self.crop(x, self.local_size, self.local_scale, gen)
            crops.append(self.blur(self.flip_and_color_jitter(c, gen), 0.5, self.local_blur, gen))
        return [c.mul(255.0) for c in crops]
