"""End-to-end live-pipeline measurement (decode -> preprocess -> model -> mask -> overlay), frame by frame; the
reference pipeline it is measured against is ``runtime.reference`` (torch). Nothing here imports torch."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from highlighter.runtime.reference import summary
from highlighter.video.pipeline import FramePipeline, Settings
from highlighter.video.sources import read_rgb


def frame_files(source: str | Path, n: int) -> list[Path]:
    """``n`` frame paths from a folder (sorted, cycled) or a single image."""
    from highlighter.images import expand_inputs

    files, _ = expand_inputs([source])
    if not files:
        raise FileNotFoundError(f"no frames in {source}")
    return [files[i % len(files)] for i in range(n)]


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
    out = summary(lat, model, time.perf_counter() - t_start, len(files))
    out.update(backend=predictor.name, preprocess_ms=float(np.median(pre)), post_ms=float(np.median(post)))
    return out, masks


def mean_iou(masks: list[np.ndarray], ref: list[np.ndarray]) -> float:
    from highlighter.evaluation import iou

    return float(np.mean([iou(a, b) for a, b in zip(masks, ref)]))


__all__ = ["frame_files", "measure_pipeline", "mean_iou"]
