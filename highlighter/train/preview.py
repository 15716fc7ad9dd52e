"""Pictures written during training: attention maps (DINO) or reconstructions (MAE) on fixed photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from highlighter.core.mae import compose_views, masking_from_noise, to_display
from highlighter.defaults import MASS
from highlighter.postprocess import fuse, threshold_maps
from highlighter.preprocess import official, official_mae
from highlighter.render import heatmap, label, overlay, save_png, side_by_side, stack


@torch.no_grad()
def dino_preview(model, images: list[Image.Image], size: int, device) -> np.ndarray:
    rows = []
    for img in images:
        x, shown = official(img, size, model.cfg.patch_size)
        attn = model(torch.from_numpy(x).to(device))[0].float().cpu().numpy()  # (heads, h, w)
        fused = fuse(attn)
        mask = threshold_maps(fused, "mass", MASS)
        heads = [heatmap(a, model.cfg.patch_size) for a in attn[:3]]
        rows.append(side_by_side([shown, heatmap(fused, model.cfg.patch_size), overlay("mask", shown, fused, mask),
                                  *heads], ["photo", "fused", "mask (60% mass)", *[f"head {i}" for i in range(3)]]))
    return stack(rows)


@torch.no_grad()
def mae_preview(model, images: list[Image.Image], device, mask_ratio: float = 0.75) -> np.ndarray:
    rows = []
    norm_pix = bool(model.dec_cfg.norm_pix_loss)
    for k, img in enumerate(images):
        x = torch.from_numpy(official_mae(img, model.input_size)).to(device)
        noise = torch.rand(1, model.num_patches, generator=torch.Generator().manual_seed(k)).to(device)
        ids_keep, mask, ids_restore = masking_from_noise(noise, mask_ratio)
        pred = model.forward_decoder(model.forward_encoder(x, ids_keep), ids_restore)
        v = compose_views(x[0].cpu(), pred[0].float().cpu(), mask[0].cpu(), model.cfg.patch_size, norm_pix)
        rows.append(side_by_side([to_display(a) for a in (v.original, v.masked, v.reconstruction, v.paste)],
                                 ["original", "masked", "reconstruction", "reconstruction + visible"]))
    return stack(rows)


def write_preview(run_dir: Path, picture: np.ndarray, step: int, epoch: int) -> Path:
    picture = label(picture, f"step {step}, epoch {epoch}")
    folder = run_dir / "previews"
    path = save_png(folder / f"step_{step:08d}.png", picture)
    save_png(folder / "latest.png", picture)
    return path
