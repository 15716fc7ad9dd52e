"""``highlighter attention``: class-token attention maps and DINO masks for photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from highlighter.commands.common import PhotoBatch, info, report_model, resolve_checkpoint
from highlighter.core.checkpoint import load_checkpoint
from highlighter.core.inference import AttentionEngine
from highlighter.errors import HighlighterError
from highlighter.postprocess import check_heads
from highlighter.render import heatmap, overlay, save_png


def write_outputs(out: Path, stem: str, res, rule: str, threshold: float | None, heads) -> dict:
    """The npz (attention, mask, fused_attention, fused_mask) and the PNGs for one photo."""
    masks = res.masks(rule, threshold)
    fused = res.fused(heads)
    fused_mask = res.fused_mask(rule, threshold, heads)
    np.savez_compressed(out / f"{stem}.npz", attention=res.attention.astype(np.float32), mask=masks.astype(np.uint8),
                        fused_attention=fused.astype(np.float32), fused_mask=fused_mask.astype(np.uint8))
    p = res.patch_size
    for h in range(res.attention.shape[0]):
        save_png(out / f"{stem}_attn_head{h}.png", heatmap(res.attention[h], p))
    save_png(out / f"{stem}_attn_fused.png", heatmap(fused, p))
    save_png(out / f"{stem}_mask_overlay.png", overlay("mask", res.image, fused, fused_mask))
    return {"fused_fraction": float(fused_mask.mean())}


def run(args) -> int:
    ck = load_checkpoint(resolve_checkpoint(args.checkpoint, "attention"), checkpoint_key=args.checkpoint_key,
                         num_heads=args.num_heads, arch=args.arch)
    try:
        engine = AttentionEngine(ck, args.device)
    except ValueError as e:
        raise HighlighterError(str(e)) from None
    report_model(ck)
    try:
        heads = check_heads(args.heads, engine.num_heads)
    except ValueError as e:
        raise HighlighterError(f"--heads: {e}") from None
    batch = PhotoBatch(args.images, args.out, "attention")
    for path, img in batch:
        try:
            res = engine.run(img, args.image_size)
        except ValueError as e:
            batch.skip(f"skipped {path}: {e}")
            continue
        stem = batch.names.stem(path)
        stats = write_outputs(batch.out, stem, res, args.mask_rule, args.threshold, heads)
        h, w = res.attention.shape[1:]
        info(f"{path} -> {batch.out / stem}.npz ({res.attention.shape[0]} heads, {h}x{w} patches, "
             f"fused mask {stats['fused_fraction']:.0%} of patches)")
        batch.done += 1
    return batch.finish()
