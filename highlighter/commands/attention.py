"""``highlighter attention``: class-token attention maps and DINO masks for photos."""

from __future__ import annotations

import numpy as np

from highlighter.commands.common import PhotoBatch, info, report_model, resolve_checkpoint
from highlighter.core.formats import load_checkpoint
from highlighter.errors import HighlighterError
from highlighter.features import fit_pca, pca_rgb
from highlighter.postprocess import check_heads
from highlighter.results import write_attention, write_boxes
from highlighter.video.pipeline import Settings
from highlighter.video.session import photo_road


def run(args) -> int:
    spec = resolve_checkpoint(args.checkpoint, "attention")  # a name, the photos and --out: checked before loading
    batch = PhotoBatch(args.images, args.out, "attention")
    ck = load_checkpoint(spec, checkpoint_key=args.checkpoint_key,
                         num_heads=args.num_heads, arch=args.arch)
    try:
        heads = check_heads(args.heads, ck.vit.num_heads)
    except ValueError as e:
        raise HighlighterError(f"--heads: {e}") from None
    joint = getattr(args, "pca_joint", False)
    want_pca = joint or getattr(args, "pca", False)
    settings = Settings(threshold=args.threshold, rule=args.mask_rule, heads=heads, keep_features=want_pca,
                        draw=False)  # write_attention draws the files' overlay
    try:
        road = photo_road(ck, args.device, args.image_size, args.preprocessing, settings)
    except ValueError as e:
        raise HighlighterError(str(e)) from None
    report_model(ck)
    boxes: dict[str, list[int] | None] = {}
    held = []  # --pca-joint: every photo's result, written once the one basis is fitted

    def write(path, stem, res, pca):
        stats = write_attention(batch.folder(), stem, res, args.mask_rule, args.threshold, heads, pca)
        boxes[stem] = stats["box"]
        h, w = res.grid
        info(f"{path} -> {batch.out / stem}.npz ({res.attention.shape[0]} heads, {h}x{w} patches, "
             f"fused mask {stats['fused_fraction']:.0%} of patches, box {stats['box']})")
        batch.done += 1

    for path, img in batch:
        try:
            res = road.process(np.asarray(img), name=path.name)
        except ValueError as e:
            batch.skip(f"skipped {path}: {e}")
            continue
        stem = batch.names.stem(path)
        if joint:
            held.append((path, stem, res))
        else:
            write(path, stem, res, pca_rgb(res.tokens, res.grid) if want_pca else None)
    if held:
        basis = fit_pca([res.tokens for _, _, res in held])
        info(f"joint PCA: one basis over {len(held)} photo(s), {sum(len(r.tokens) for _, _, r in held)} patches")
        for path, stem, res in held:
            write(path, stem, res, basis.rgb(res.tokens, res.grid))
    if boxes:
        write_boxes(batch.out, boxes)
    return batch.finish()
