"""The straightforward per-frame pipeline the live back-ends are measured against (``bench live``): PIL decode and
resize, an eager fp32 forward with explicit attention in every block, and visualize_attention.py's post-processing."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from highlighter.defaults import MASS
from highlighter.postprocess import grid_to_pixels, threshold_maps, upsample


def summary(lat_ms: list[float], model_ms: list[float], wall_s: float, n: int) -> dict:
    """fps over the wall time, median model time, latency percentiles."""
    return {"fps": n / wall_s, "model_ms": float(np.median(model_ms)),
            "latency_ms_p50": float(np.percentile(lat_ms, 50)), "latency_ms_p95": float(np.percentile(lat_ms, 95)),
            "frames": n}


def measure_reference(ck, image_size: tuple[int, int], files: list[Path], warmup: int = 2,
                      threshold: float = MASS) -> dict:
    """The straightforward way, per frame: PIL decode and bilinear resize, ToTensor + Normalize, eager fp32
    forward with explicit softmax attention in every block, the official per-head mass rule,
    nearest upsampling of the masks to the image, and a numpy overlay on the full-resolution frame."""
    import torch
    from PIL import Image

    from highlighter.core.backbone import set_fused_attention
    from highlighter.core.build import build_attention_model
    from highlighter.preprocess import official

    model = build_attention_model(ck)
    set_fused_attention(model, False)
    H, W = image_size
    p = ck.vit.patch_size

    def one(path: Path) -> float:
        t0 = time.perf_counter()
        img = Image.open(path).convert("RGB")
        x, _ = official(img, (H, W), p)  # PIL bilinear resize, ToTensor, Normalize
        with torch.no_grad():
            attn = model(torch.from_numpy(x))[0].numpy()  # (nh, h, w)
        th = threshold_maps(attn, "mass", threshold)  # the official rule, head by head
        up = np.stack([upsample(m, p) for m in th])  # (nh, H, W), nearest as scale_factor=p
        fg = grid_to_pixels(up.max(0), (img.height, img.width))
        frame = np.asarray(img).astype(np.float32)
        overlay = np.where(fg[..., None] > 0, 0.55 * frame + 0.45 * np.array([255, 48, 48]), frame)
        overlay.astype(np.uint8)
        return (time.perf_counter() - t0) * 1e3

    for f in files[:warmup]:
        one(f)
    t_start = time.perf_counter()
    lat = [one(f) for f in files]
    return summary(lat, lat, time.perf_counter() - t_start, len(files))


__all__ = ["measure_reference", "summary"]
