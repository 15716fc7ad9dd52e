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


def tokencut_mask(keys: np.ndarray, grid: tuple[int, int], attention: np.ndarray | None = None, tau: float = 0.2,
                  eps: float = 1e-5) -> np.ndarray:
    """keys: (h*w, D) patch keys of the last block; returns a bool (h, w) foreground mask."""
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
    if attention is not None:  # the side that holds more of DINO's attention is the object
        att = attention.reshape(-1)
        if att[part].mean() < att[~part].mean():
            part = ~part
        seed_idx = int(np.argmax(np.where(part, att, -np.inf)))
    else:
        seed_idx = int(np.argmax(np.abs(x)))
        if not part[seed_idx]:
            part = ~part
    return _component(part.reshape(h, w), divmod(seed_idx, w))
