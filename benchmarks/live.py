"""The live pipeline's matrix: models x backends, end to end on real frames, against the reference.

End to end = decode (cv2.imread of the 854x480 PNG) -> preprocess (one blobFromImage) -> model -> fused
mask on the patch grid -> one resize and blend. The reference pipeline is the straightforward one: PIL
resize, eager fp32 with explicit attention in every block, visualize_attention.py's post-processing.
Masks are compared with torch fp32's on the same frames (mean IoU of the fused masks).

    .venv/bin/python benchmarks/live.py [--frames N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

from highlighter.core.formats import load_checkpoint
from highlighter.paths import default_checkpoint_or_none, models_dir
from highlighter.runtime.predictor import BACKENDS, bf16_usable, make_predictor
from highlighter.runtime.reference import measure_reference
from highlighter.video.bench import frame_files, mean_iou, measure_pipeline

FRAMES = Path(__file__).resolve().parents[2] / "shared" / "data" / "video" / "blackswan" / "frames"
MODELS = [  # name, spec, size, frames, target fps
    ("ViT-Ti/16 224", "random:vit_tiny/16", (224, 224), 1.0, 60),
    ("ViT-S/16 224", "random:vit_small/16", (224, 224), 1.0, 30),
    ("ViT-S/8 224", "random:vit_small/8", (224, 224), 0.4, 12),
    ("ViT-S/16 480", "random:vit_small/16", (480, 480), 0.4, None),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "live.json"))
    args = ap.parse_args()
    if not FRAMES.is_dir():
        print(f"missing {FRAMES}", file=sys.stderr)
        return 1
    models = list(MODELS)
    default_model = default_checkpoint_or_none("attention")
    if default_model:
        models.append(("default model 224", str(default_model), (224, 224), 1.0, None))
    else:
        print(f"(no default model in {models_dir()}: that row is skipped)")
    backends = [b for b in BACKENDS if b != "torch-bf16" or bf16_usable("cpu")]
    rows = []
    for name, spec, size, share, target in models:
        ck = load_checkpoint(spec)
        files = frame_files(FRAMES, max(10, int(args.frames * share)))
        ref = measure_reference(ck, size, files[:10])
        fp32_masks = None
        for backend in backends:
            pred = make_predictor(backend, ck, size, device="cpu", log=lambda m: None)
            r, masks = measure_pipeline(pred, files)
            if backend == "torch-fp32":
                fp32_masks = masks
            r.update(model=name, target_fps=target, reference_fps=ref["fps"], speedup=r["fps"] / ref["fps"],
                     mean_iou_vs_fp32=mean_iou(masks, fp32_masks), agrees=mean_iou(masks, fp32_masks) >= 0.98)
            rows.append(r)
            print(f"{name:18s} {backend:11s} {r['fps']:6.1f} fps  model {r['model_ms']:6.1f} ms  p50 "
                  f"{r['latency_ms_p50']:6.1f} p95 {r['latency_ms_p95']:6.1f} ms  x{r['speedup']:.2f} vs reference "
                  f"({ref['fps']:.1f} fps)  IoU {r['mean_iou_vs_fp32']:.3f}", flush=True)
    print("\n| model | backend | fps | model ms | latency p50 / p95 ms | reference fps | speed-up | IoU vs fp32 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['backend']} | {r['fps']:.1f} | {r['model_ms']:.1f} | "
              f"{r['latency_ms_p50']:.1f} / {r['latency_ms_p95']:.1f} | {r['reference_fps']:.1f} | "
              f"{r['speedup']:.2f} | {r['mean_iou_vs_fp32']:.3f} |")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": {"cpu": platform.processor() or platform.machine(),
                                           "cores": os.cpu_count()}, "frames": str(FRAMES), "rows": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
