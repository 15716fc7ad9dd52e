"""``highlighter eval``: foreground-mask IoU against ground truth (with baselines), or DINO's 20-NN accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from highlighter.commands.common import info, report_model, resolve_checkpoint, warn
from highlighter.core.checkpoint import load_checkpoint
from highlighter.core.inference import AttentionEngine, MAEEngine
from highlighter.core.mae import IMAGENET_MEAN, IMAGENET_STD
from highlighter.core.transforms import dino_preprocess
from highlighter.errors import HighlighterError, ImageError
from highlighter.evaluation import (
    centred_ellipse,
    grid_to_image,
    hidden_pixels,
    iou,
    knn_classify,
    masked_mse,
    mean_fill,
    model_size,
    summarise,
)
from highlighter.images import IMAGE_EXTENSIONS, load_rgb


def run(args) -> int:
    if args.mae:
        ck = load_checkpoint(resolve_checkpoint(args.checkpoint, "mae"), num_heads=args.num_heads)
        report_model(ck)
        result = reconstruction(MAEEngine(ck, args.device), args)
    else:
        ck = load_checkpoint(resolve_checkpoint(args.checkpoint, "attention"), num_heads=args.num_heads)
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
    if not (args.images and args.masks):
        raise HighlighterError("eval needs --images DIR and --masks DIR (or --knn with --train/--val/--labels)")
    images = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    pairs = [(p, Path(args.masks) / f"{p.stem}.png") for p in images]
    missing = [p.name for p, m in pairs if not m.exists()]
    if missing:
        warn(f"{len(missing)} image(s) without a mask are skipped, e.g. {missing[0]}")
    pairs = [(p, m) for p, m in pairs if m.exists()]
    if not pairs:
        raise HighlighterError(f"no image in {args.images} has a mask in {args.masks}")
    gts, preds, names = [], [], []
    for img_path, mask_path in tqdm(pairs, desc="eval", unit="img", disable=None):
        try:
            img = load_rgb(img_path)
        except ImageError as e:
            warn(f"skipped {e}")
            continue
        gt = np.asarray(load_rgb(mask_path).convert("L")) >= 128  # 255 = object
        if gt.shape != (img.height, img.width):
            warn(f"skipped {img_path.name}: mask {gt.shape} and image {(img.height, img.width)} differ")
            continue
        res = engine.run(img, model_size(gt.shape, args.image_size, engine.ck.vit.patch_size),
                         keys=args.mask_rule == "tokencut")
        grid = res.fused_mask(args.mask_rule, args.threshold)
        preds.append(grid_to_image(grid, gt.shape))
        gts.append(gt)
        names.append(img_path.stem)
    fraction = float(np.mean([g.mean() for g in gts]))
    rows = []
    for name, gt, pred in zip(names, gts, preds):
        rows.append({"name": name, "iou": iou(pred, gt), "ellipse": iou(centred_ellipse(gt.shape, fraction), gt),
                     "all_foreground": iou(np.ones_like(gt), gt), "predicted_fraction": float(pred.mean()),
                     "true_fraction": float(gt.mean())})
    out = {"images": len(rows), "mask_rule": args.mask_rule, "threshold": args.threshold,
           "image_size": args.image_size, "mean_foreground_fraction": fraction,
           "iou": summarise(rows, "iou"), "baseline_ellipse": summarise(rows, "ellipse"),
           "baseline_all_foreground": summarise(rows, "all_foreground"), "per_image": rows}
    info(f"mean IoU {out['iou']['mean']:.3f} over {len(rows)} images   (centred ellipse "
         f"{out['baseline_ellipse']['mean']:.3f}, all foreground {out['baseline_all_foreground']['mean']:.3f})")
    for seq, v in out["iou"].get("per_sequence", {}).items():
        info(f"  {seq:20s} {v:.3f}   ellipse {out['baseline_ellipse']['per_sequence'][seq]:.3f}")
    return out


def _features(engine, paths: list[Path], size: int) -> torch.Tensor:
    feats = []
    for p in tqdm(paths, desc="features", unit="img", disable=None):
        x, _ = dino_preprocess(load_rgb(p), (size, size), engine.ck.vit.patch_size)
        with torch.no_grad():
            _, f = engine.model(x.to(engine.device), with_features=True)
        feats.append(f[0].float().cpu())
    return torch.stack(feats)


def knn(engine, args) -> dict:
    if not (args.train and args.val and args.labels):
        raise HighlighterError("--knn needs --train DIR (class sub-folders), --val DIR and --labels FILE")
    train_root = Path(args.train)
    classes = sorted(d.name for d in train_root.iterdir() if d.is_dir())
    index = {c: i for i, c in enumerate(classes)}
    train = [(p, index[c]) for c in classes for p in sorted((train_root / c).rglob("*"))
             if p.suffix.lower() in IMAGE_EXTENSIONS][:: max(1, args.knn_stride)]
    labels = dict(line.split("\t")[:2] for line in Path(args.labels).read_text().splitlines() if "\t" in line)
    val = [(Path(args.val) / f, index[w.strip()]) for f, w in labels.items() if w.strip() in index]
    val = [(p, y) for p, y in val if p.exists()]
    if not train or not val:
        raise HighlighterError("no training or validation images found for the k-NN evaluation")
    size = args.image_size
    ftr = _features(engine, [p for p, _ in train], size)
    fva = _features(engine, [p for p, _ in val], size)
    pred = knn_classify(ftr, torch.tensor([y for _, y in train]), fva, k=args.k, temperature=0.07,
                        num_classes=len(classes))
    acc = float((pred == torch.tensor([y for _, y in val])).float().mean())
    info(f"{args.k}-NN top-1 accuracy {acc:.2%} ({len(val)} val images, {len(train)} train images, "
         f"{len(classes)} classes, chance {1 / len(classes):.2%})")
    return {"knn_top1": acc, "k": args.k, "temperature": 0.07, "train_images": len(train), "val_images": len(val),
            "classes": len(classes)}


def _pixels(normalised: np.ndarray) -> np.ndarray:
    """(H, W, 3) ImageNet-normalised -> RGB in [0, 1], clipped as the MAE tab displays it."""
    return np.clip(normalised * IMAGENET_STD + IMAGENET_MEAN, 0.0, 1.0)


def reconstruction(engine: MAEEngine, args) -> dict:
    """Masked-patch MSE in pixel space ([0, 1] RGB at the model's input size) of the reconstruction, against
    filling every hidden patch with the mean of the visible pixels; the same masks for both."""
    if not args.images:
        raise HighlighterError("eval --mae needs --images DIR")
    if not engine.model.has_decoder:
        raise HighlighterError("eval --mae needs a checkpoint with the MAE decoder (this one is an encoder only)")
    paths = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise HighlighterError(f"no images in {args.images}")
    p = engine.ck.vit.patch_size
    grid = (engine.model.input_size // p,) * 2
    rows = []
    for i, path in enumerate(tqdm(paths, desc="mae eval", unit="img", disable=None)):
        try:
            img = load_rgb(path)
        except ImageError as e:
            warn(f"skipped {e}")
            continue
        model, base = [], []
        for s in range(args.seeds):
            res = engine.run(img, args.mask_ratio, seed=1000 * i + s)
            hidden = hidden_pixels(res.mask, grid, p)
            original = _pixels(res.views.original)
            model.append(masked_mse(_pixels(res.views.reconstruction), original, hidden))
            base.append(masked_mse(mean_fill(original, hidden), original, hidden))
        rows.append({"name": path.stem, "mse": float(np.mean(model)), "mean_fill_mse": float(np.mean(base))})
    mse, fill = summarise(rows, "mse"), summarise(rows, "mean_fill_mse")
    reduction = 1.0 - mse["mean"] / fill["mean"]
    info(f"masked-patch MSE {mse['mean']:.5f} over {len(rows)} images x {args.seeds} masks at ratio "
         f"{args.mask_ratio}   (mean-of-visible fill {fill['mean']:.5f}: {reduction:.1%} lower)")
    return {"images": len(rows), "mask_ratio": args.mask_ratio, "masks_per_image": args.seeds,
            "input_size": engine.model.input_size, "space": "RGB in [0, 1], clipped",
            "mse": mse, "baseline_mean_fill": fill, "reduction_vs_mean_fill": reduction, "per_image": rows}
