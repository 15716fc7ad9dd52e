"""Export the shipped DINO model's live ONNX graph for the bundled clip's size into models/, and index it in
models/graphs.json, so that the app's very first start streams before torch is imported (see
highlighter/runtime/graphs.py). Run it again whenever models/dino_default.safetensors changes:
tests/test_default_models.py fails until the graph matches the model.

    .venv/bin/python scripts/ship_graph.py [--short 224]
"""

from __future__ import annotations

import argparse
import sys

import cv2


def main() -> int:
    from highlighter.core.formats import load_checkpoint
    from highlighter.defaults import IMAGE_SIZE
    from highlighter.paths import default_checkpoint, demo_clip, models_dir
    from highlighter.preprocess import fit_size
    from highlighter.runtime.export import export_live
    from highlighter.runtime.graphs import record

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--short", type=int, default=IMAGE_SIZE, help="the shorter side (the app's default)")
    args = ap.parse_args()
    model = default_checkpoint("attention")
    ck = load_checkpoint(model)
    cap = cv2.VideoCapture(str(demo_clip()))
    shape = (int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)))
    cap.release()
    H, W = fit_size(shape, args.short, ck.vit.patch_size)
    out = models_dir() / f"{model.stem}_{H}x{W}.onnx"
    export_live(ck, out, (H, W))
    index = record(model, out, (H, W), ck.vit.patch_size, ck.vit.num_heads, folder=models_dir())
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) and {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
