"""End-to-end live-pipeline measurement (decode -> preprocess -> model -> mask -> overlay), and the same
for the reference pipeline: PIL resize, an eager fp32 forward with explicit attention in every block, and
visualize_attention.py's post-processing, frame by frame."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from highlighter.postprocess import grid_to_pixels, threshold_maps, upsample
from highlighter.video.pipeline import FramePipeline, Settings
from highlighter.video.sources import read_rgb


def frame_files(source: str | Path, n: int) -> list[Path]:
    """``n`` frame paths from a folder (sorted, cycled) or a single image."""
    from highlighter.images import expand_inputs

    files, _ = expand_inputs([source])
    if not files:
        raise FileNotFoundError(f"no frames in {source}")
    return [files[i % len(files)] for i in range(n)]


def _summary(lat_ms: list[float], model_ms: list[float], wall_s: float, n: int) -> dict:
    return {"fps": n / wall_s, "model_ms": float(np.median(model_ms)),
            "latency_ms_p50": float(np.percentile(lat_ms, 50)), "latency_ms_p95": float(np.percentile(lat_ms, 95)),
            "frames": n}


def measure_pipeline(predictor, files: list[Path], warmup: int = 3, overlay: str = "mask") -> tuple[dict, list]:
    """Each frame: cv2.imread to RGB (decode) -> pipeline (resize+colour+normalise in one pass, model, mass mask on
    the patch grid, one resize and one blend). Returns the summary and the per-frame fused masks."""
    pipe = FramePipeline(predictor, Settings(overlay=overlay))
    for f in files[:warmup]:
        pipe.process(read_rgb(f))
    lat, model, pre, post, masks = [], [], [], [], []
    t_start = time.perf_counter()
    for f in files:
        t0 = time.perf_counter()
        frame = read_rgb(f)
        res = pipe.process(frame, t_read=t0)
        lat.append(res.timings["latency_ms"])
        model.append(res.timings["model_ms"])
        pre.append(res.timings["preprocess_ms"])
        post.append(res.timings["post_ms"])
        masks.append(res.mask)
    out = _summary(lat, model, time.perf_counter() - t_start, len(files))
    out.update(backend=predictor.name, preprocess_ms=float(np.median(pre)), post_ms=float(np.median(post)))
    return out, masks


def measure_reference(ck, image_size: tuple[int, int], files: list[Path], warmup: int = 2,
                      threshold: float = 0.6) -> dict:
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
    return _summary(lat, lat, time.perf_counter() - t_start, len(files))


def mean_iou(masks: list[np.ndarray], ref: list[np.ndarray]) -> float:
    from highlighter.evaluation import iou

    return float(np.mean([iou(a, b) for a, b in zip(masks, ref)]))


__all__ = ["frame_files", "measure_pipeline", "measure_reference", "mean_iou"]
