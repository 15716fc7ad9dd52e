"""``highlighter attention``: class-token attention maps and DINO masks for photos."""

from __future__ import annotations

from highlighter.commands.common import PhotoBatch, info, report_model, resolve_checkpoint
from highlighter.core.formats import load_checkpoint
from highlighter.core.inference import AttentionEngine
from highlighter.errors import HighlighterError
from highlighter.postprocess import check_heads
from highlighter.results import write_attention


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
        stats = write_attention(batch.out, stem, res, args.mask_rule, args.threshold, heads)
        h, w = res.attention.shape[1:]
        info(f"{path} -> {batch.out / stem}.npz ({res.attention.shape[0]} heads, {h}x{w} patches, "
             f"fused mask {stats['fused_fraction']:.0%} of patches)")
        batch.done += 1
    return batch.finish()
