"""``highlighter eval``: foreground-mask IoU against ground truth (with baselines), DINO's 20-NN accuracy, or an
MAE's masked-patch error; the work is ``highlighter.evaluation``'s."""

from __future__ import annotations

import json
from pathlib import Path

from highlighter.commands.common import info, report_model, resolve_checkpoint, warn
from highlighter.core.formats import load_checkpoint
from highlighter.core.inference import MAEEngine
from highlighter.defaults import IMAGE_SIZE
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
    if args.track:
        result = tracking(args)
        ck = None
    elif args.mae:
        check_inputs(args)  # as the folders
        ck = load_checkpoint(spec, num_heads=args.num_heads)
        report_model(ck)
        result = reconstruction(MAEEngine(ck, args.device), args)
    else:
        check_inputs(args)
        ck = load_checkpoint(spec, num_heads=args.num_heads)
        from highlighter.video.pipeline import Settings
        from highlighter.video.session import photo_road

        if args.knn:  # the class token of each photo resized to a square
            road = photo_road(ck, args.device, preprocessing=args.preprocessing)
        else:
            road = photo_road(ck, args.device, args.image_size, args.preprocessing,
                              Settings(threshold=args.threshold, rule=args.mask_rule, draw=False))
        report_model(ck)
        result = knn(road.predictor, args) if args.knn else masks(road, args)
    if ck is not None:
        result["model"] = {"checkpoint": ck.path or ck.source, "arch": ck.vit.describe()}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
        info(f"wrote {args.json}")
    return 0


def masks(road, args) -> dict:
    out = evaluate_masks(road, args.images, args.masks, warn)
    info(f"mean IoU {out['iou']['mean']:.3f} over {out['images']} images   (centred ellipse "
         f"{out['baseline_ellipse']['mean']:.3f}, all foreground {out['baseline_all_foreground']['mean']:.3f})")
    for seq, v in out["iou"].get("per_sequence", {}).items():
        info(f"  {seq:20s} {v:.3f}   ellipse {out['baseline_ellipse']['per_sequence'][seq]:.3f}")
    return out


def knn(engine, args) -> dict:
    out = evaluate_knn(engine, args.train, args.val, args.labels, args.image_size or IMAGE_SIZE, args.k,
                       args.knn_stride)
    info(f"{args.k}-NN top-1 accuracy {out['knn_top1']:.2%} ({out['val_images']} val images, {out['train_images']} "
         f"train images, {out['classes']} classes, chance {1 / out['classes']:.2%})")
    return out


def reconstruction(engine: MAEEngine, args) -> dict:
    out = evaluate_mae(engine, args.images, args.mask_ratio, args.seeds, warn)
    info(f"masked-patch MSE {out['mse']['mean']:.5f} over {out['images']} images x {args.seeds} masks at ratio "
         f"{args.mask_ratio}   (mean-of-visible fill {out['baseline_mean_fill']['mean']:.5f}: "
         f"{out['reduction_vs_mean_fill']:.1%} lower)")
    return out


UNTRAINED, COPY = "untrained", "copy first mask"


def tracking(args) -> dict:
    from tqdm import tqdm

    from highlighter.commands.track import propagation_cfg
    from highlighter.core.formats import random_like
    from highlighter.video.track import Tracker, evaluate_tracking

    cfg = propagation_cfg(args)
    ck = load_checkpoint(resolve_checkpoint(args.checkpoint, "attention"), num_heads=args.num_heads)
    report_model(ck)
    v = ck.vit
    untrained = random_like(v)  # the same architecture, timm's initialisation (seed 0)
    model = ck.name if ck.path else ck.source
    trackers = {model: Tracker(ck, cfg, args.device, args.image_size),
                UNTRAINED: Tracker(untrained, cfg, args.device, args.image_size), COPY: None}
    out = evaluate_tracking(trackers, args.track,
                            lambda n, desc: tqdm(total=n, desc=desc, unit="frame", disable=None, leave=False))
    names = list(trackers)
    info(f"J&F (J / F) per sequence, DAVIS scoring (all frames but the first and the last); context: the first frame "
         f"and the last {cfg.n_last}, neighbourhood {cfg.neighbourhood}, top-{cfg.topk}, temperature "
         f"{cfg.temperature}")
    info(f"{'sequence':16s}" + "".join(f"{n[:26]:>28s}" for n in names))
    for seq, row in [*out["sequences"].items(), ("mean", {n: out["mean"][n] for n in names})]:
        info(f"{seq:16s}" + "".join(f"{row[n]['JF']:>10.3f} ({row[n]['J']:.3f} / {row[n]['F']:.3f})" for n in names))
    out["settings"] = {"n_last": cfg.n_last, "neighbourhood": cfg.neighbourhood, "topk": cfg.topk,
                       "temperature": cfg.temperature, "size": args.image_size or "the frames' own"}
    out["model"] = {"checkpoint": ck.path or ck.source, "arch": v.describe(), "untrained": untrained.source}
    return out
