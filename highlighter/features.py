"""What the patch features show beyond the class token's attention: DINOv2-style PCA colours, patch-to-patch
and similarity. Pure numpy (and OpenCV for connected components), so every road uses it.

Shapes: ``features`` (N, D) with one row per patch, row-major over the patch grid (h, w).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PCABasis:
    """The first three principal directions of some patch features, and what min-max maps them to [0, 1]."""

    mean: np.ndarray  # (D,)
    components: np.ndarray  # (3, D), rows are unit vectors, signs fixed (largest |loading| positive)
    lo: np.ndarray  # (3,) per-channel minimum of the projections the basis was fitted on
    hi: np.ndarray  # (3,) per-channel maximum

    def project(self, features: np.ndarray) -> np.ndarray:
        """(N, D) -> (N, 3) projections on the three components (not scaled)."""
        return (np.asarray(features, np.float64) - self.mean) @ self.components.T

    def rgb(self, features: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
        """float32 (h, w, 3) in [0, 1]: each channel min-max scaled with the fitted range, clipped."""
        p = self.project(features)
        out = (p - self.lo) / np.maximum(self.hi - self.lo, 1e-12)
        return np.clip(out, 0.0, 1.0).astype(np.float32).reshape(*grid, 3)


def fit_pca(features: np.ndarray | list[np.ndarray]) -> PCABasis:
    """Fit the first three principal components of one photo's patch features, or of several photos' together
    (a list: one basis, so that a colour means the same direction in every photo)."""
    feats = np.concatenate([np.asarray(f, np.float64) for f in features]) if isinstance(features, list) \
        else np.asarray(features, np.float64)
    if feats.ndim != 2 or feats.shape[0] < 3:
        raise ValueError(f"PCA needs (N >= 3, D) patch features, got {feats.shape}")
    mean = feats.mean(0)
    centred = feats - mean
    # the eigenvectors of the (D, D) scatter matrix are the SVD's right singular vectors, at a fraction of the
    # cost for N >> D (5 live frames of ViT-Ti/8, 7000 x 192: 60 ms against 480 ms on one core)
    _, vecs = np.linalg.eigh(centred.T @ centred)
    comps = vecs[:, ::-1][:, :3].T
    if comps.shape[0] < 3:  # fewer than 3 feature dims: pad with zeros
        comps = np.vstack([comps, np.zeros((3 - comps.shape[0], feats.shape[1]))])
    signs = np.sign(comps[np.arange(3), np.abs(comps).argmax(1)])
    comps = comps * np.where(signs == 0, 1.0, signs)[:, None]  # a deterministic sign per component
    proj = (feats - mean) @ comps.T
    return PCABasis(mean, comps, proj.min(0), proj.max(0))


def pca_rgb(features: np.ndarray, grid: tuple[int, int], basis: PCABasis | None = None) -> np.ndarray:
    """DINOv2's PCA picture: the patches on their first three principal components, each channel min-max
    scaled to [0, 1] over the patches. float32 (h, w, 3). With ``basis``, that fixed basis and range."""
    return (basis or fit_pca(features)).rgb(features, grid)


def pca_foreground(features: np.ndarray, grid: tuple[int, int], threshold: float = 0.5, flip: bool = False,
                   basis: PCABasis | None = None) -> np.ndarray:
    """The DINOv2 demo's background removal: bool (h, w), the patches whose first component, min-max scaled to
    [0, 1], is above ``threshold`` (below it with ``flip``)."""
    first = (basis or fit_pca(features)).rgb(features, grid)[..., 0]
    return first < threshold if flip else first > threshold


def cosine_similarity_map(features: np.ndarray, index: int, grid: tuple[int, int]) -> np.ndarray:
    """float32 (h, w) in [-1, 1]: each patch's cosine similarity to patch ``index`` (row-major)."""
    f = np.asarray(features, np.float64)
    if not 0 <= index < f.shape[0]:
        raise ValueError(f"patch {index} is outside the {grid[0]}x{grid[1]} grid")
    return cosine_similarity_to(f, f[index], grid)


def cosine_similarity_to(features: np.ndarray, reference: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """float32 (h, w) in [-1, 1]: each patch's cosine similarity to a feature vector (D,), such as a patch
    picked on an earlier frame (Live follows it frame after frame)."""
    f = np.asarray(features, np.float64)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    r = np.asarray(reference, np.float64)
    r = r / max(float(np.linalg.norm(r)), 1e-12)
    return (f @ r).astype(np.float32).reshape(grid)


def best_matches(query: np.ndarray, others: list[np.ndarray], k: int = 1) -> list[list[tuple[int, float]]]:
    """For a query feature (D,), the ``k`` most cosine-similar patches of each other photo: [(index, sim)]."""
    q = np.asarray(query, np.float64)
    q = q / max(np.linalg.norm(q), 1e-12)
    out = []
    for f in others:
        f = np.asarray(f, np.float64)
        sims = f @ q / np.maximum(np.linalg.norm(f, axis=1), 1e-12)
        top = np.argsort(-sims)[:k]
        out.append([(int(i), float(sims[i])) for i in top])
    return out


def pca_rgb_foreground(features: np.ndarray, grid: tuple[int, int], threshold: float = 0.5, flip: bool = False,
                       basis: PCABasis | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The DINOv2 demo's picture with the background removed: the foreground is ``pca_foreground``'s; its
    patches are coloured by a second PCA fitted on them alone (as the demo does), the background is black.
    With a fixed ``basis`` (Live), the foreground keeps that basis's colours instead of a refit, so they do not
    flicker. Returns (rgb float32 (h, w, 3), foreground bool (h, w))."""
    f = np.asarray(features)
    fg = pca_foreground(f, grid, threshold, flip, basis)
    rgb = np.zeros((*grid, 3), np.float32)
    flat, keep = rgb.reshape(-1, 3), fg.reshape(-1)
    if basis is not None:
        flat[keep] = basis.rgb(f[keep], (int(keep.sum()), 1)).reshape(-1, 3)
    elif keep.sum() >= 3:
        flat[keep] = pca_rgb(f[keep], (int(keep.sum()), 1)).reshape(-1, 3)
    else:
        flat[keep] = 1.0  # too few patches for a PCA: white
    return rgb, fg


def similar_region(features: np.ndarray, index: int, grid: tuple[int, int], threshold: float) -> np.ndarray:
    """What a click picks: bool (h, w), the patches whose cosine similarity to patch ``index`` is at least
    ``threshold``, kept only where 4-connected to the clicked patch (which is always in it)."""
    import cv2

    sim = cosine_similarity_map(features, index, grid)
    near = (sim >= threshold).astype(np.uint8)
    i, j = divmod(int(index), grid[1])
    near[i, j] = 1
    _, comp = cv2.connectedComponents(near, connectivity=4)
    return comp == comp[i, j]


def box_patches(box, grid: tuple[int, int], size: tuple[int, ...]) -> np.ndarray:
    """What a drag picks: bool (h, w), the patches whose centre lies inside ``box`` = [x0, y0, x1, y1] (in any
    corner order) in the pixels of a picture of ``size`` (H, W) that the grid covers whole."""
    h, w = grid
    H, W = size[:2]
    x0, x1 = sorted((float(box[0]), float(box[2])))
    y0, y1 = sorted((float(box[1]), float(box[3])))
    cy = (np.arange(h) + 0.5) * H / h
    cx = (np.arange(w) + 0.5) * W / w
    return ((cy >= y0) & (cy <= y1))[:, None] & ((cx >= x0) & (cx <= x1))[None, :]


def region_match(region: np.ndarray, features: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """float32 (h, w) in [-1, 1]: for each patch of a photo, its nearest-neighbour cosine similarity to the
    picked region's features ``region`` (K, D), i.e. how well the best-matching picked patch matches it."""
    r = np.asarray(region, np.float64)
    if r.ndim != 2 or r.shape[0] == 0:
        raise ValueError("the picked region has no patches")
    r = r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-12)
    f = np.asarray(features, np.float64)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    return (f @ r.T).max(axis=1).astype(np.float32).reshape(grid)
