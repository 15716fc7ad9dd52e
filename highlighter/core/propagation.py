"""DINO's label propagation for video object segmentation, as facebookresearch/dino's eval_video_segmentation.py
does it (torch only; numpy in and out at the edges).

Each frame's last-block patch tokens (after the final norm, L2-normalised) are the queries; the keys are the
tokens of the first frame and of the last ``n_last`` frames, whose labels are known (the first frame's one-hot
labels, the others' soft labels as propagated). For each target patch only source patches within
``neighbourhood`` cells (in both directions, in every context frame) count; of those, the ``topk`` largest
affinities exp(cos / temperature) over all context frames are kept, normalised to sum to one, and average the
source labels. The label map on the patch grid is upsampled as the script does (bilinear by the patch size,
each label's map min-max normalised, argmax) and resized to the frame by nearest neighbour.

The script computes the whole (context x target x source) affinity and masks it; here the targets go in tiles
against the sources their neighbourhood can reach, which is the same arithmetic without the masked-out part
(a few GB less at 480p with patch 8).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


@dataclass(frozen=True)
class PropagationCfg:
    """The script's defaults: --n_last_frames 7, --size_mask_neighborhood 12, --topk 5, and its fixed
    ``torch.exp(torch.bmm(...) / 0.1)``."""

    n_last: int = 7
    neighbourhood: int = 12  # 0: no spatial restriction
    topk: int = 5
    temperature: float = 0.1

    def check(self) -> PropagationCfg:
        if self.n_last < 0 or self.neighbourhood < 0 or self.topk < 1 or not self.temperature > 0:
            raise ValueError(f"propagation needs n_last >= 0, neighbourhood >= 0, topk >= 1 and temperature > 0, "
                             f"got {self}")
        return self


def one_hot(labels: np.ndarray, num_labels: int) -> torch.Tensor:
    """(h, w) label indices -> (C, h, w) float32 one-hot, C = ``num_labels`` (the script's ``to_one_hot``)."""
    idx = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))
    return F.one_hot(idx, num_labels).permute(2, 0, 1).float()


def label_grid(labels: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """A label map at the frame's size -> the patch grid (gh, gw), by PIL nearest, as the script's ``read_seg``."""
    gh, gw = grid
    return np.asarray(Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8)).resize((gw, gh), Image.NEAREST))


@torch.no_grad()
def propagate(target: torch.Tensor, sources: torch.Tensor, labels: torch.Tensor, cfg: PropagationCfg,
              tile: int = 8) -> torch.Tensor:
    """One frame's soft labels from its context.

    target: (h, w, D) and sources: (n, h, w, D), both L2-normalised patch tokens; labels: (n, C, h, w) of the
    sources. Returns (C, h, w)."""
    h, w, D = target.shape
    n, C = labels.shape[:2]
    R = cfg.neighbourhood if cfg.neighbourhood > 0 else max(h, w)
    src_labels = labels.permute(0, 2, 3, 1)  # (n, h, w, C)
    out = target.new_empty(C, h, w)
    rows, cols = torch.arange(h), torch.arange(w)
    for i0 in range(0, h, tile):
        i1 = min(h, i0 + tile)
        a0, a1 = max(0, i0 - R), min(h, i1 + R)
        for j0 in range(0, w, tile):
            j1 = min(w, j0 + tile)
            b0, b1 = max(0, j0 - R), min(w, j1 + R)
            q = target[i0:i1, j0:j1].reshape(-1, D)  # (T, D)
            k = sources[:, a0:a1, b0:b1].reshape(-1, D)  # (n*S, D), S = the window's cells
            aff = torch.exp(q @ k.T / cfg.temperature)  # (T, n*S)
            ti, tj = torch.meshgrid(rows[i0:i1], cols[j0:j1], indexing="ij")
            si, sj = torch.meshgrid(rows[a0:a1], cols[b0:b1], indexing="ij")
            near = (((ti.reshape(-1, 1) - si.reshape(1, -1)).abs() <= R)
                    & ((tj.reshape(-1, 1) - sj.reshape(1, -1)).abs() <= R))  # (T, S)
            aff = aff * near.repeat(1, n).to(aff.dtype)  # the script's mask_neighborhood
            kth = torch.topk(aff, min(cfg.topk, aff.shape[1]), dim=1).values[:, -1:]  # (T, 1)
            aff = torch.where(aff < kth, torch.zeros((), dtype=aff.dtype), aff)
            aff = aff / aff.sum(dim=1, keepdim=True)
            lab = src_labels[:, a0:a1, b0:b1].reshape(-1, C)  # (n*S, C)
            out[:, i0:i1, j0:j1] = (aff @ lab).T.reshape(C, i1 - i0, j1 - j0)
    return out


@torch.no_grad()
def upsample_labels(soft: torch.Tensor, patch: int, size: tuple[int, int]) -> np.ndarray:
    """(C, h, w) soft labels -> (H, W) uint8 label indices at the frame's ``size``, as the script: bilinear
    (align_corners=False) by ``patch``, each label's map shifted to a minimum of 0 and divided by its maximum
    (when that is positive), argmax over labels, then PIL nearest to (H, W)."""
    up = F.interpolate(soft[None].float(), scale_factor=patch, mode="bilinear", align_corners=False,
                       recompute_scale_factor=False)[0]  # (C, h*p, w*p)
    for c in range(up.shape[0]):
        if up[c].max() > 0:
            m = up[c] - up[c].min()
            up[c] = m / m.max()
    _, idx = torch.max(up, dim=0)
    idx = np.asarray(idx.cpu(), dtype=np.uint8)
    H, W = size
    return np.asarray(Image.fromarray(idx).resize((W, H), Image.NEAREST))


class LabelPropagation:
    """The context of one video: the first frame and the last ``n_last`` frames, tokens and labels.

    ``start(tokens, labels)`` with the first frame's (h, w, D) tokens and (C, h, w) labels; then ``step(tokens)``
    for each next frame returns its (C, h, w) soft labels and adds it to the context."""

    def __init__(self, cfg: PropagationCfg | None = None):
        cfg = (cfg or PropagationCfg()).check()
        self.cfg = cfg
        self.first: tuple[torch.Tensor, torch.Tensor] | None = None
        self.recent: deque = deque(maxlen=cfg.n_last if cfg.n_last > 0 else 0)

    def start(self, tokens: torch.Tensor, labels: torch.Tensor) -> None:
        self.first = (F.normalize(tokens.float(), dim=-1, p=2), labels.float())
        self.recent.clear()

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.first is None:
            raise RuntimeError("start() with the first frame's labels comes first")
        target = F.normalize(tokens.float(), dim=-1, p=2)
        if target.shape != self.first[0].shape:
            raise ValueError(f"this frame's patch grid {tuple(target.shape[:2])} differs from the first frame's "
                             f"{tuple(self.first[0].shape[:2])}")
        context = [self.first, *self.recent]
        soft = propagate(target, torch.stack([t for t, _ in context]), torch.stack([s for _, s in context]),
                         self.cfg)
        if self.cfg.n_last > 0:
            self.recent.append((target, soft))
        return soft
