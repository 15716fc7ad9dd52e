"""The MAE engine: a loaded masked autoencoder plus the demo notebook's preprocessing; a PIL image in, numpy out.

`highlighter mae`, the MAE tab and evaluation go through it. (The attention maps take the one road of
``runtime.base.Predictor`` and ``video.pipeline.FramePipeline``.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from highlighter.core.build import build_mae_model
from highlighter.core.device import resolve_device
from highlighter.core.formats import LoadedCheckpoint, load_checkpoint
from highlighter.core.mae import MAEViews, check_mask, compose_views
from highlighter.preprocess import official_mae


@dataclass
class MAEResult:
    mask: np.ndarray  # (L,) uint8, 1 = hidden
    pred: np.ndarray  # (L, p*p*3) float32, the decoder output as models_mae.py returns it
    views: MAEViews
    loss: float


class MAEEngine:
    """Masked-autoencoder reconstructions as in the official demo notebook."""

    def __init__(self, ck: LoadedCheckpoint, device: str = "auto"):
        self.ck = ck
        self.device = resolve_device(device)
        self.model = build_mae_model(ck, self.device)

    @classmethod
    def from_checkpoint(cls, path: str, device: str = "auto", **kw) -> MAEEngine:
        return cls(load_checkpoint(path, **kw), device)

    @property
    def num_patches(self) -> int:
        return self.model.num_patches

    @property
    def norm_pix(self) -> bool:
        return bool(self.ck.decoder and self.ck.decoder.norm_pix_loss)

    @torch.no_grad()
    def run(self, img: Image.Image, mask_ratio: float = 0.75, seed: int | None = None,
            mask: np.ndarray | None = None, denorm: str = "neighbours", fit: str = "squash") -> MAEResult:
        """``fit``: "squash" (the notebook's resize to the square input) or "crop" (the centre square)."""
        L = self.num_patches
        x = torch.from_numpy(official_mae(img, self.model.input_size, fit)).to(self.device)
        if mask is not None:
            mask = check_mask(mask, L)
            loss, pred, m = self.model(x, mask=torch.from_numpy(mask.astype(np.float32))[None])
        else:
            if not 0.0 <= mask_ratio < 1.0:
                raise ValueError(f"mask ratio must be in [0, 1), got {mask_ratio}")
            gen = torch.Generator().manual_seed(seed) if seed is not None else None
            noise = torch.rand(1, L, generator=gen).to(self.device)
            loss, pred, m = self.model(x, mask_ratio=mask_ratio, noise=noise)
        views = compose_views(x[0].cpu(), pred[0].cpu(), m[0].cpu(), self.ck.vit.patch_size, self.norm_pix, denorm)
        if not self.ck.norm_pix_known:
            views.note += "; the file does not say whether it used norm-pix targets, assumed not"
        return MAEResult(m[0].cpu().numpy().astype(np.uint8), pred[0].float().cpu().numpy(), views, float(loss))
