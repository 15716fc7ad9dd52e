"""The objectness probe: a quick score of where a DINO model's class token looks, cheap enough to run during
training (``highlighter train dino --probe-every-minutes M``) and as ``highlighter probe``.

A probe folder holds ``images/`` and ``masks/`` (PNG, 255 = object, same stem), like ``highlighter eval``.
Each folder's sorted photos are split in two fixed halves: every ``every``-th photo (index % every == 0) is the
*selection* subset, used to compare and choose checkpoints; the others are the *report* subset, kept for the
figures that are quoted, so that nothing is chosen and reported on the same photos.

For every folder and input size (the photo's shorter side, aspect kept), it reports:

- ``in_out``: the mean head-fused attention over the patches inside the object (ground truth resized to the
  patch grid, nearest) divided by the mean over the patches outside it. 1 = no preference, < 1 = background.
- ``heads_in_out``: the same ratio for each head's own map (a list, head 0 first): a few background heads can
  pull the fused ratio below 1 while one head finds the object, and the DINO paper shows its best head.
- ``border``: the share of the fused attention on the outermost ring of patches divided by the ring's share of
  the patches. 1 = no position bias, > 1 = drawn to the borders.
- ``iou``: the mean IoU of each mask rule (:data:`PROBE_RULES`) against the ground truth at the photo's size.

and, once per size, ``flat``: the normalised entropy (1 = flat) of the fused map of a constant grey image,
which a model with a position bias or artefacts makes peaky.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from highlighter.core.transforms import dino_preprocess
from highlighter.defaults import MASS
from highlighter.errors import HighlighterError, ImageError
from highlighter.evaluation import grid_to_image, iou, model_size
from highlighter.images import IMAGE_EXTENSIONS, load_rgb
from highlighter.postprocess import border_ring, threshold_maps, tokencut_mask

# mass: DINO's 60%-mass rule; mass-peak: its 4-connected component that holds the attention peak;
# tokencut: the cut side with more attention; tokencut-border: the cut side touching the border less.
PROBE_RULES = ("mass", "mass-peak", "tokencut", "tokencut-border")
SPLITS = ("selection", "report", "all")


def default_probe_folders() -> list[Path]:
    """The development eval sets beside the checkout (``../shared/data/eval/{horses,davis-stills}``), or
    the folders in ``HIGHLIGHTER_PROBE_DATA`` (os.pathsep-separated). Empty when neither exists."""
    env = os.environ.get("HIGHLIGHTER_PROBE_DATA", "")
    if env:
        return [Path(p) for p in env.split(os.pathsep) if p]
    root = Path(__file__).resolve().parents[2] / "shared" / "data" / "eval"
    return [root / n for n in ("horses", "davis-stills") if (root / n / "images").is_dir()]


def probe_sizes(ck) -> list[int]:
    """The sizes worth probing for a checkpoint: its training crop and 1.5x it when the file says how it was
    trained, else its position-embedding grid's size and 1.5x it."""
    p = ck.vit.patch_size
    meta = ck.meta or {}
    recipe = meta.get("train") or (meta.get("trained") or {}).get("recipe") or {}  # a run's checkpoint / an export
    crop = recipe.get("global_crop_size") or ck.vit.pos_grid * p
    return [int(crop), max(p, round(crop * 1.5 / p) * p)]


def split_indices(n: int, split: str, every: int = 3) -> list[int]:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")
    if split == "all":
        return list(range(n))
    return [i for i in range(n) if (i % every == 0) == (split == "selection")]


def peak_component(mask: np.ndarray, attention: np.ndarray) -> np.ndarray:
    """The 4-connected component of ``mask`` that contains the attention peak (the mask if the peak is outside)."""
    seed = np.unravel_index(int(np.argmax(attention)), attention.shape)
    if not mask[seed]:
        return mask.astype(bool)
    _, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=4)
    return labels == labels[seed]


def rule_mask(rule: str, fused: np.ndarray, keys: np.ndarray | None) -> np.ndarray:
    """bool (h, w) foreground on the patch grid for one of :data:`PROBE_RULES`."""
    if rule in ("mass", "mass-peak"):
        m = threshold_maps(fused, "mass", MASS).astype(bool)
        return peak_component(m, fused) if rule == "mass-peak" else m
    if rule in ("tokencut", "tokencut-border"):
        side = "border" if rule == "tokencut-border" else "attention"
        return tokencut_mask(keys, fused.shape, fused, side=side)
    raise ValueError(f"unknown probe rule {rule!r}; choose from {PROBE_RULES}")


@dataclass
class _Photo:
    name: str
    gt: np.ndarray  # bool (H, W) at the photo's size
    inputs: dict  # size -> (tensor (1, 3, h, w), gt on the patch grid (gh, gw) bool)


class Probe:
    """Loads and preprocesses the photos once; ``probe(model)`` then takes seconds for a small ViT."""

    def __init__(self, folders: list[str | os.PathLike], patch_size: int, sizes=(64, 96), split: str = "selection",
                 every: int = 3, rules=PROBE_RULES, max_photos: int = 0):
        if not folders:
            raise HighlighterError("the probe needs at least one folder with images/ and masks/")
        self.folders = [Path(f) for f in folders]
        self.sizes, self.split, self.every, self.rules = tuple(int(s) for s in sizes), split, every, tuple(rules)
        self.patch_size = patch_size
        self.sets: dict[str, list[_Photo]] = {}
        for folder in self.folders:
            img_dir, mask_dir = folder / "images", folder / "masks"
            if not img_dir.is_dir() or not mask_dir.is_dir():
                raise HighlighterError(f"probe folder {folder}: needs images/ and masks/ sub-folders")
            pairs = [(p, mask_dir / f"{p.stem}.png") for p in sorted(img_dir.iterdir())
                     if p.suffix.lower() in IMAGE_EXTENSIONS and (mask_dir / f"{p.stem}.png").exists()]
            if not pairs:
                raise HighlighterError(f"probe folder {folder}: no image has a mask (masks/<stem>.png)")
            chosen = [pairs[i] for i in split_indices(len(pairs), split, every)]
            if max_photos:
                chosen = chosen[:max_photos]
            photos = []
            for img_path, mask_path in chosen:
                try:
                    img = load_rgb(img_path)
                    gt = np.asarray(load_rgb(mask_path).convert("L")) >= 128
                except ImageError:
                    continue
                if gt.shape != (img.height, img.width):
                    continue
                inputs = {}
                for s in self.sizes:
                    x, _ = dino_preprocess(img, model_size(gt.shape, s, patch_size), patch_size)
                    gh, gw = x.shape[-2] // patch_size, x.shape[-1] // patch_size
                    small = cv2.resize(gt.astype(np.uint8), (gw, gh), interpolation=cv2.INTER_NEAREST).astype(bool)
                    inputs[s] = (x, small)
                photos.append(_Photo(img_path.stem, gt, inputs))
            self.sets[folder.name] = photos
        self.constant = {s: dino_preprocess(Image.new("RGB", (s * 16 // 9, s), (128, 128, 128)),
                                            model_size((s, s * 16 // 9), s, patch_size), patch_size)[0]
                         for s in self.sizes}

    def describe(self) -> str:
        """In plain words: which photos of which folders the figures come from."""
        which = {"selection": f"every {self.every}rd photo" if self.every == 3 else f"every {self.every}th photo",
                 "report": f"the photos outside every {self.every}rd" if self.every == 3 else "the other photos",
                 "all": "all photos"}[self.split]
        sets = ", ".join(f"{f} ({len(self.sets[f.name])} photos)" for f in self.folders)
        return (f"objectness probe: {self.split} subset ({which}) of {sets}; shorter side "
                f"{', '.join(map(str, self.sizes))} px")

    @torch.no_grad()
    def __call__(self, model, device: torch.device | str = "cpu") -> dict:
        """model: an ``AttentionViT``. Returns {set: {size: {in_out, border, iou: {rule: v}}}, 'flat': {size: v},
        'seconds': t}, sizes as strings (JSON keys)."""
        t0 = time.time()
        was_training = model.training
        model.eval()
        need_keys = any(r.startswith("tokencut") for r in self.rules)
        out: dict = {}
        try:
            for name, photos in self.sets.items():
                per_size = {}
                for s in self.sizes:
                    ratios, borders, ious, per_head = [], [], {r: [] for r in self.rules}, []
                    for ph in photos:
                        x, small = ph.inputs[s]
                        got: list | None = [] if need_keys else None
                        attn = model(x.to(device), keys=got)[0].float().cpu().numpy()
                        fused = attn.mean(0)
                        keys = None
                        if need_keys:
                            keys = got[0][0].float().cpu().numpy()  # the patch keys
                        if small.any() and (~small).any():
                            ratios.append(fused[small].mean() / max(fused[~small].mean(), 1e-12))
                            per_head.append(attn[:, small].mean(1) / np.maximum(attn[:, ~small].mean(1), 1e-12))
                        ring = border_ring(fused.shape)
                        borders.append((fused[ring].sum() / fused.sum()) / ring.mean())
                        for r in self.rules:
                            ious[r].append(iou(grid_to_image(rule_mask(r, fused, keys), ph.gt.shape), ph.gt))
                    per_size[str(s)] = {"in_out": _mean(ratios), "border": _mean(borders),
                                        "heads_in_out": [float(v) for v in np.mean(per_head, 0)] if per_head else [],
                                        "iou": {r: _mean(v) for r, v in ious.items()}}
                out[name] = per_size
            flat = {}
            for s, x in self.constant.items():
                fused = model(x.to(device))[0].float().mean(0).cpu().numpy().ravel()
                p = fused / fused.sum()
                flat[str(s)] = float(-(p * np.log(np.clip(p, 1e-12, None))).sum() / math.log(len(p)))
            out["flat"] = flat
        finally:
            model.train(was_training)
        out["seconds"] = round(time.time() - t0, 2)
        return out


def _mean(v) -> float:
    return float(np.mean(v)) if len(v) else float("nan")


def format_table(result: dict, rules=PROBE_RULES) -> str:
    """A plain-text table: one row per set and size."""
    head = f"{'set':14s} {'size':>4s} {'in/out':>7s} {'border':>7s} " + " ".join(f"{r:>15s}" for r in rules)
    lines = [head]
    for name, per_size in result.items():
        if name in ("flat", "seconds") or not isinstance(per_size, dict):
            continue
        for s, v in per_size.items():
            lines.append(f"{name:14s} {s:>4s} {v['in_out']:7.3f} {v['border']:7.3f} "
                         + " ".join(f"{v['iou'].get(r, float('nan')):15.3f}" for r in rules))
    flat = result.get("flat", {})
    lines.append("flatness on a constant image (1 = flat): " + ", ".join(f"{s} px {v:.3f}" for s, v in flat.items()))
    return "\n".join(lines)


class KnnProbe:
    """DINO's 20-NN classification (cosine, T 0.07) of the class-token features, as a learning signal during a run:
    ``root`` holds ``train/<class>/*`` and ``val/images`` with ``val/labels.tsv`` ('file<TAB>class'), Tiny
    ImageNet's layout. Every ``stride``-th training photo is used; all photos are decoded once, at ``size`` x
    ``size``. ``pixels`` is the same classifier on the raw pixels (16 x 16, mean-centred), the floor that learnt
    features must clear."""

    def __init__(self, root: str | os.PathLike, size: int = 64, stride: int = 4, k: int = 20):
        from highlighter.evaluation import knn_classify  # noqa: F401 - fail early if unavailable

        root = Path(root)
        train, val, labels = root / "train", root / "val" / "images", root / "val" / "labels.tsv"
        if not train.is_dir() or not val.is_dir() or not labels.exists():
            raise HighlighterError(f"--probe-knn {root}: needs train/<class>/, val/images/ and val/labels.tsv")
        classes = sorted(d.name for d in train.iterdir() if d.is_dir())
        index = {c: i for i, c in enumerate(classes)}
        train_set = [(p, index[c]) for c in classes for p in sorted((train / c).rglob("*"))
                     if p.suffix.lower() in IMAGE_EXTENSIONS][::max(1, stride)]
        table = [line.split("\t")[:2] for line in labels.read_text().splitlines() if "\t" in line]
        val_set = [(val / f, index[w.strip()]) for f, w in table if w.strip() in index and (val / f).exists()]
        if not train_set or not val_set:
            raise HighlighterError(f"--probe-knn {root}: no training or validation photos found")
        self.size, self.k, self.classes = size, k, len(classes)
        self.train_x, self.train_y = self._load(train_set)
        self.val_x, self.val_y = self._load(val_set)
        self.pixels = self._accuracy(self._pixels(self.train_x), self._pixels(self.val_x))

    def _load(self, items):
        xs = np.stack([np.asarray(load_rgb(p).resize((self.size, self.size), Image.BICUBIC)) for p, _ in items])
        return torch.from_numpy(xs).permute(0, 3, 1, 2).contiguous(), torch.tensor([y for _, y in items])

    @staticmethod
    def _pixels(x: torch.Tensor) -> torch.Tensor:
        small = torch.nn.functional.interpolate(x.float(), size=(16, 16), mode="area").flatten(1)
        return small - small.mean(1, keepdim=True)

    def _accuracy(self, train_feats: torch.Tensor, val_feats: torch.Tensor) -> float:
        from highlighter.evaluation import knn_classify

        pred = knn_classify(train_feats, self.train_y, val_feats, k=self.k, temperature=0.07,
                            num_classes=self.classes)
        return float((pred == self.val_y).float().mean())

    @torch.no_grad()
    def _features(self, model, x: torch.Tensor, device, batch: int = 256) -> torch.Tensor:
        from highlighter.core.device import cpu_supports_bf16
        from highlighter.core.transforms import normalise

        device = torch.device(device)
        bf16 = device.type == "cuda" or cpu_supports_bf16()  # features for a neighbour vote: bf16 is plenty
        out = []
        for i in range(0, len(x), batch):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                _, f = model(normalise(x[i:i + batch].to(device)), with_features=True)
            out.append(f.float().cpu())
        return torch.cat(out)

    def describe(self) -> str:
        return (f"k-NN probe: {len(self.train_y)} training and {len(self.val_y)} validation photos at {self.size} px, "
                f"{self.k}-NN; raw pixels score {100 * self.pixels:.2f}%")

    def __call__(self, model, device: torch.device | str = "cpu") -> dict:
        t0 = time.time()
        was_training = model.training
        model.eval()
        try:
            acc = self._accuracy(self._features(model, self.train_x, device), self._features(model, self.val_x, device))
        finally:
            model.train(was_training)
        return {"top1": acc, "pixels_top1": self.pixels, "k": self.k, "train_images": len(self.train_y),
                "val_images": len(self.val_y), "size": self.size, "seconds": round(time.time() - t0, 2)}
