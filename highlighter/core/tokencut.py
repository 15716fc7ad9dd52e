"""TokenCut (Wang et al. 2022): a normalised cut over the last block's patch keys.

Affinity A_ij = 1 where cos(k_i, k_j) > tau, else eps; the second-smallest generalised eigenvector of
(D - A) x = lambda D x splits the patches in two; the foreground is the side holding the patch with the
largest |x| (or, given DINO's attention, the side with more of it), kept to its connected component.
"""

from __future__ import annotations

import numpy as np
import torch


def _component(mask: np.ndarray, seed: tuple[int, int]) -> np.ndarray:
    """The 4-connected component of ``mask`` that contains ``seed``."""
    import cv2

    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=4)
    return labels == labels[seed] if mask[seed] else mask


def border_ring(grid: tuple[int, int]) -> np.ndarray:
    """bool (h, w): the outermost row and column of patches on each side."""
    ring = np.zeros(grid, dtype=bool)
    ring[0], ring[-1], ring[:, 0], ring[:, -1] = True, True, True, True
    return ring


def tokencut_mask(keys: np.ndarray, grid: tuple[int, int], attention: np.ndarray | None = None, tau: float = 0.2,
                  eps: float = 1e-5, side: str = "attention") -> np.ndarray:
    """keys: (h*w, D) patch keys of the last block; returns a bool (h, w) foreground mask.

    ``side`` picks which half of the cut is the object: ``attention`` (the half with more of DINO's
    attention, or without attention the half holding the largest |x|, as TokenCut), or ``border`` (Deep
    Spectral Methods' rule: the half that covers more of the border ring is the background)."""
    k = torch.nn.functional.normalize(torch.as_tensor(keys, dtype=torch.float64), dim=1)
    a = k @ k.T
    a = torch.where(a > tau, torch.ones_like(a), torch.full_like(a, eps))
    d = a.sum(1)
    d_isqrt = d.rsqrt()
    lap = torch.eye(len(d), dtype=a.dtype) - d_isqrt[:, None] * a * d_isqrt[None, :]  # D^-1/2 (D - A) D^-1/2
    _, vecs = torch.linalg.eigh(lap)
    x = (d_isqrt * vecs[:, 1]).numpy()  # back to the generalised problem
    part = x > x.mean()
    h, w = grid
    if side == "border":
        ring = border_ring(grid).reshape(-1)
        if part[ring].mean() > (~part)[ring].mean():
            part = ~part
        seed_idx = int(np.argmax(np.where(part, np.abs(x), -np.inf)))
    elif attention is not None:  # the side that holds more of DINO's attention is the object
        att = attention.reshape(-1)
        if att[part].mean() < att[~part].mean():
            part = ~part
        seed_idx = int(np.argmax(np.where(part, att, -np.inf)))
    else:
        seed_idx = int(np.argmax(np.abs(x)))
        if not part[seed_idx]:
            part = ~part
    return _component(part.reshape(h, w), divmod(seed_idx, w))
