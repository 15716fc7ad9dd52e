"""Mask quality against ground truth, its baselines, and DINO's k-NN evaluation (pure numpy / torch)."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from highlighter.postprocess import grid_to_pixels
from highlighter.preprocess import fit_size


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Jaccard index of two boolean masks; 1.0 when both are empty."""
    union = np.logical_or(pred, gt).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, gt).sum() / union)


def centred_ellipse(shape: tuple[int, int], fraction: float) -> np.ndarray:
    """A centred ellipse with the image's aspect ratio covering ``fraction`` of its area (clipped to the frame)."""
    H, W = shape
    s = min(1.0, math.sqrt(4 * fraction / math.pi))  # pi (sW/2)(sH/2) = f H W
    yy, xx = np.mgrid[0:H, 0:W]
    cy, cx = (H - 1) / 2, (W - 1) / 2
    a, b = max(s * W / 2, 0.5), max(s * H / 2, 0.5)
    return ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 <= 1.0


def sequence_of(stem: str) -> str | None:
    """DAVIS-style names `<seq>_<frame>` -> seq; None when the name does not end in _<digits>."""
    seq, _, frame = stem.rpartition("_")
    return seq if seq and frame.isdigit() else None


def summarise(rows: list[dict], key: str) -> dict:
    """Mean of ``key`` over rows, and per DAVIS sequence when names have that form."""
    out = {"mean": float(np.mean([r[key] for r in rows])) if rows else float("nan")}
    groups = defaultdict(list)
    for r in rows:
        seq = sequence_of(r["name"])
        if seq is not None:
            groups[seq].append(r[key])
    if groups:
        out["per_sequence"] = {s: float(np.mean(v)) for s, v in sorted(groups.items())}
    return out


def grid_to_image(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A patch-grid mask at the image's (H, W), as bool (``postprocess.grid_to_pixels``)."""
    return grid_to_pixels(np.asarray(mask).astype(bool), shape)


model_size = fit_size  # the photo's shorter side at S, aspect kept, on the patch grid (highlighter.preprocess)


def knn_classify(train_feats, train_labels, test_feats, k: int = 20, temperature: float = 0.07,
                 num_classes: int | None = None, chunk: int = 256):
    """DINO's eval_knn: cosine similarity on L2-normalised features, the k nearest training samples vote
    with weight exp(sim / T). Tensors in, predicted labels out. (torch is imported here, so that the IoU
    above serves the torch-free live path too.)"""
    import torch

    num_classes = num_classes or int(train_labels.max()) + 1
    train = torch.nn.functional.normalize(train_feats, dim=1)
    test = torch.nn.functional.normalize(test_feats, dim=1)
    preds = []
    for i in range(0, len(test), chunk):  # no autograd: features are plain tensors
        sim = test[i:i + chunk] @ train.T  # (b, N)
        top, idx = sim.topk(min(k, train.shape[0]), dim=1)
        votes = torch.zeros(len(top), num_classes)
        votes.scatter_add_(1, train_labels[idx], (top / temperature).exp())
        preds.append(votes.argmax(1))
    return torch.cat(preds)


def hidden_pixels(mask: np.ndarray, grid: tuple[int, int], patch: int) -> np.ndarray:
    """Patch mask (L,), 1 = hidden, row-major over ``grid`` (h, w) -> boolean pixel mask (h*p, w*p)."""
    h, w = grid
    return grid_to_pixels(np.asarray(mask, dtype=bool).reshape(h, w), (h * patch, w * patch))


def mean_fill(img: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """The MAE baseline: every hidden pixel gets the per-channel mean of the visible pixels. img (H, W, C)."""
    out = np.array(img, dtype=np.float64, copy=True)
    out[hidden] = out[~hidden].mean(axis=0)
    return out


def masked_mse(pred: np.ndarray, target: np.ndarray, hidden: np.ndarray) -> float:
    """Mean squared error over the hidden pixels (all channels)."""
    diff = np.asarray(pred, dtype=np.float64)[hidden] - np.asarray(target, dtype=np.float64)[hidden]
    return float(np.mean(diff**2))
