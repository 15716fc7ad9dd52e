"""``highlighter eval``: foreground-mask IoU against ground truth (with baselines), DINO's 20-NN accuracy, or an
MAE's masked-patch error; the work is ``highlighter.evaluation``'s."""

from __future__ import annotations

import json
from pathlib import Path

from highlighter.commands.common import info, report_model, resolve_checkpoint, warn
from highlighter.core.formats import load_checkpoint
from highlighter.core.inference import AttentionEngine, MAEEngine
from highlighter.errors import HighlighterError
from highlighter.evaluation import evaluate_knn, evaluate_mae, evaluate_masks
from highlighter.images import IMAGE_EXTENSIONS


def check_inputs(args) -> None:
    """The folders and files each mode needs, checked before the model loads."""
    if args.knn:
        if not (args.train and args.val and args.labels):
            raise HighlighterError("--knn needs --train DIR (class sub-folders), --val DIR and --labels FILE")
        needed = [("--train", args.train, "folder"), ("--val", args.val, "folder"), ("--labels", args.labels, "file")]
    elif args.mae:
        if not args.images:
            raise HighlighterError("eval --mae needs --images DIR")
        needed = [("--images", args.images, "folder")]
    else:
        if not (args.images and args.masks):
            raise HighlighterError("eval needs --images DIR and --masks DIR (or --knn with --train/--val/--labels)")
        needed = [("--images", args.images, "folder"), ("--masks", args.masks, "folder")]
    for flag, value, kind in needed:
        path = Path(value)
        if not (path.is_dir() if kind == "folder" else path.is_file()):
            raise HighlighterError(f"{flag} {value}: no such {kind}")
        if flag in ("--images", "--val") and not any(f.suffix.lower() in IMAGE_EXTENSIONS for f in path.iterdir()):
            raise HighlighterError(f"{flag} {value}: no images in this folder")
    if args.json and Path(args.json).is_dir():
        raise HighlighterError(f"--json {args.json}: a folder is there, not a file")


def run(args) -> int:
    spec = resolve_checkpoint(args.checkpoint, "mae" if args.mae else "attention")  # checked before loading,
    check_inputs(args)  # as the folders
    if args.mae:
        ck = load_checkpoint(spec, num_heads=args.num_heads)
        report_model(ck)
        result = reconstruction(MAEEngine(ck, args.device), args)
    else:
        ck = load_checkpoint(spec, num_heads=args.num_heads)
        engine = AttentionEngine(ck, args.device)
        report_model(ck)
        result = knn(engine, args) if args.knn else masks(engine, args)
    result["model"] = {"checkpoint": ck.path or ck.source, "arch": ck.vit.describe()}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
        info(f"wrote {args.json}")
    return 0


def masks(engine, args) -> dict:
    out = evaluate_masks(engine, args.images, args.masks, args.mask_rule, args.threshold, args.image_size, warn)
    info(f"mean IoU {out['iou']['mean']:.3f} over {out['images']} images   (centred ellipse "
         f"{out['baseline_ellipse']['mean']:.3f}, all foreground {out['baseline_all_foreground']['mean']:.3f})")
    for seq, v in out["iou"].get("per_sequence", {}).items():
        info(f"  {seq:20s} {v:.3f}   ellipse {out['baseline_ellipse']['per_sequence'][seq]:.3f}")
    return out


def knn(engine, args) -> dict:
    out = evaluate_knn(engine, args.train, args.val, args.labels, args.image_size, args.k, args.knn_stride)
    info(f"{args.k}-NN top-1 accuracy {out['knn_top1']:.2%} ({out['val_images']} val images, {out['train_images']} "
         f"train images, {out['classes']} classes, chance {1 / out['classes']:.2%})")
    return out


def reconstruction(engine: MAEEngine, args) -> dict:
    out = evaluate_mae(engine, args.images, args.mask_ratio, args.seeds, warn)
    info(f"masked-patch MSE {out['mse']['mean']:.5f} over {out['images']} images x {args.seeds} masks at ratio "
         f"{args.mask_ratio}   (mean-of-visible fill {out['baseline_mean_fill']['mean']:.5f}: "
         f"{out['reduction_vs_mean_fill']:.1%} lower)")
    return out
