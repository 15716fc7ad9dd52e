"""Mask quality: the eval sets (DAVIS stills, Weizmann horses) and the DAVIS video sequences.

For the stills: mean IoU against the ground truth with the DINO rule (60% of the attention mass) and with
TokenCut, next to a centred ellipse covering the set's mean foreground fraction and the all-foreground
mask. For video: the IoU against each frame's mask, and the
flicker (mean IoU between consecutive predicted masks; 1 = perfectly steady) with temporal smoothing
off and on. For the MAE: the masked-patch MSE on the DAVIS stills against a mean-of-visible-pixels fill.
Prints tables and writes JSON.

    .venv/bin/python benchmarks/quality.py [--checkpoint PATH|default] [--image-size 224]
                                           [--mae-checkpoint PATH|default|none] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from highlighter.core.formats import load_checkpoint
from highlighter.core.inference import MAEEngine
from highlighter.evaluation import centred_ellipse, evaluate_mae, grid_to_image, iou
from highlighter.images import load_rgb
from highlighter.paths import default_checkpoint
from highlighter.postprocess import mass_mask
from highlighter.video.pipeline import Settings
from highlighter.video.session import photo_road
from highlighter.video.smoothing import Smoother

RULES = ("mass", "tokencut")  # the DINO rule (60% of the mass) first
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def checkpoint_path(spec: str, kind: str) -> str:
    return str(default_checkpoint(kind)) if spec == "default" else spec


def stills(road, folder: Path) -> dict:
    rows, gts = [], []
    for img_path in sorted((folder / "images").iterdir()):
        mask_path = folder / "masks" / f"{img_path.stem}.png"
        if not mask_path.exists():
            continue
        img = load_rgb(img_path)
        gt = np.asarray(load_rgb(mask_path).convert("L")) >= 128
        res = road.process(np.asarray(img))
        rows.append([iou(grid_to_image(res.fused_mask(rule), gt.shape), gt) for rule in RULES])
        gts.append(gt)
    f = float(np.mean([g.mean() for g in gts]))
    per_rule = np.mean(rows, axis=0)
    return {"images": len(rows), "iou": float(per_rule[0]),
            **{f"iou_{rule}": float(v) for rule, v in zip(RULES, per_rule)},
            "ellipse": float(np.mean([iou(centred_ellipse(g.shape, f), g) for g in gts])),
            "all_foreground": float(np.mean([g.mean() for g in gts]))}


def video(road, seq: Path) -> dict:
    out = {}
    for smoothing in (False, True):
        smoother, prev, ious, flicker = Smoother(), None, [], []
        for frame_path in sorted((seq / "frames").iterdir()):
            img = load_rgb(frame_path)
            gt_path = seq / "masks" / f"{frame_path.stem}.png"
            fused = road.process(np.asarray(img)).fused
            grid = smoother(fused, 0.6)[1] if smoothing else mass_mask(fused, 0.6)
            pred = grid_to_image(grid, (img.height, img.width))
            if gt_path.exists():
                ious.append(iou(pred, cv2.imread(str(gt_path), cv2.IMREAD_GRAYSCALE) >= 128))
            if prev is not None:
                flicker.append(iou(pred, prev))
            prev = pred
        key = "smoothed" if smoothing else "raw"
        out[key] = {"iou": float(np.mean(ious)), "consecutive_iou": float(np.mean(flicker)), "frames": len(ious)}
    return out


def mae(checkpoint: str) -> dict:
    """The MAE's masked-patch MSE on the DAVIS stills (ratio 0.75, 3 masks each) against a mean-of-visible fill."""
    ck = load_checkpoint(checkpoint_path(checkpoint, "mae"))
    r = evaluate_mae(MAEEngine(ck, "cpu"), DATA / "eval" / "davis-stills" / "images", mask_ratio=0.75, seeds=3)
    r.pop("per_image")
    print(f"\nMAE {ck.vit.describe()} from {ck.path or ck.source}")
    print("\n| MAE, DAVIS stills, ratio 0.75 | images x masks | masked-patch MSE | mean-of-visible fill | reduction |")
    print("|---|---|---|---|---|")
    print(f"| pixels in [0, 1] at {r['input_size']} px | {r['images']} x {r['masks_per_image']} | "
          f"{r['mse']['mean']:.5f} | {r['baseline_mean_fill']['mean']:.5f} | {r['reduction_vs_mean_fill']:.1%} |")
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="default")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--no-stills", action="store_true", help="skip the two eval sets (the slow part: TokenCut)")
    ap.add_argument("--mae-checkpoint", default="default", help="the MAE to score on the DAVIS stills ('none': skip)")
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "quality.json"))
    args = ap.parse_args()
    ck = load_checkpoint(checkpoint_path(args.checkpoint, "attention"))
    road = photo_road(ck, "cpu", args.image_size, settings=Settings(keep_features=True, draw=False))  # keys: TokenCut
    print(f"model: {ck.vit.describe()} from {ck.path or ck.source}")
    result = {"model": ck.path or ck.source, "arch": ck.vit.describe(), "image_size": args.image_size}
    print("\n| set | images | IoU, DINO rule (60% mass) | IoU, TokenCut | centred ellipse | all foreground |")
    print("|---|---|---|---|---|---|")
    for name in () if args.no_stills else ("davis-stills", "horses"):
        r = stills(road, DATA / "eval" / name)
        result[name] = r
        print(f"| {name} | {r['images']} | {r['iou_mass']:.3f} | {r['iou_tokencut']:.3f} | {r['ellipse']:.3f} | "
              f"{r['all_foreground']:.3f} |", flush=True)
    print("\n| video | frames | IoU raw | IoU smoothed | consecutive IoU raw | consecutive IoU smoothed |")
    print("|---|---|---|---|---|---|")
    for seq in sorted((DATA / "video").iterdir()):
        r = video(road, seq)
        result[f"video/{seq.name}"] = r
        print(f"| {seq.name} | {r['raw']['frames']} | {r['raw']['iou']:.3f} | {r['smoothed']['iou']:.3f} | "
              f"{r['raw']['consecutive_iou']:.3f} | {r['smoothed']['consecutive_iou']:.3f} |", flush=True)
    if args.mae_checkpoint != "none":
        result["mae"] = mae(args.mae_checkpoint)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
