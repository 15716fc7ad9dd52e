"""``highlighter bench live``: the live pipeline end to end against the reference pipeline."""

from __future__ import annotations

import json
import platform
from pathlib import Path

from highlighter.commands.common import info, resolve_checkpoint
from highlighter.core.formats import load_checkpoint
from highlighter.errors import HighlighterError


def run(args) -> int:
    from highlighter.runtime.predictor import choose_backend, make_predictor
    from highlighter.runtime.reference import measure_reference
    from highlighter.video.bench import frame_files, mean_iou, measure_pipeline

    random = f"random:{args.arch}/{args.patch_size}"
    spec = resolve_checkpoint(args.checkpoint, "attention") if args.checkpoint else random
    try:  # the name and the frames are checked before the model loads
        files = frame_files(args.source, args.frames)
    except (FileNotFoundError, NotADirectoryError) as e:
        raise HighlighterError(str(e)) from None
    ck = load_checkpoint(spec)
    from highlighter.commands.video import model_size
    from highlighter.video.sources import read_rgb

    demo = [read_rgb(f) for f in files[:: max(1, len(files) // 4)][:4]]
    size = model_size(args.image_size, demo[0], ck.vit.patch_size)  # S: the shorter side, as `video` and Live
    if args.backend == "auto":
        predictor, report = choose_backend(ck, size, demo, log=info)
        info("auto: " + ", ".join(f"{k} {v['ms']:.1f} ms IoU {v['mean_iou']:.3f} maps r {v.get('map_r', 1.0):.4f}"
                                  for k, v in report.items()
                                  if isinstance(v, dict) and "ms" in v) + f" -> {predictor.name}")
    else:
        predictor, report = make_predictor(args.backend, ck, size, log=info), {}
    result, masks = measure_pipeline(predictor, files)
    fp32, ref_masks = measure_pipeline(make_predictor("torch-fp32", ck, size, log=info), files[: min(20, len(files))])
    ref = measure_reference(ck, size, files[: min(20, len(files))])
    result.update(reference_fps=ref["fps"], reference_model_ms=ref["model_ms"], speedup=result["fps"] / ref["fps"],
                  mean_iou_vs_fp32=mean_iou(masks[: len(ref_masks)], ref_masks), model=ck.vit.arch_name,
                  image_size=list(size), source=str(args.source), auto=report or None,
                  machine=platform.processor() or platform.machine())
    info(f"{result['backend']}: {result['fps']:.1f} fps, model {result['model_ms']:.1f} ms, latency p50 "
         f"{result['latency_ms_p50']:.1f} / p95 {result['latency_ms_p95']:.1f} ms; reference {ref['fps']:.1f} fps; "
         f"speed-up {result['speedup']:.2f}x; mask IoU vs fp32 {result['mean_iou_vs_fp32']:.3f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0
