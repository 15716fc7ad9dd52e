"""``highlighter mae``: masked-autoencoder reconstructions as in the official demo notebook."""

from __future__ import annotations

import numpy as np

from highlighter.commands.common import PhotoBatch, info, report_model, resolve_checkpoint
from highlighter.core.checkpoint import load_checkpoint
from highlighter.core.inference import MAEEngine
from highlighter.core.mae import check_mask, to_display
from highlighter.errors import HighlighterError
from highlighter.render import label, save_png, side_by_side


def read_mask_file(path: str, n: int) -> np.ndarray:
    try:
        mask = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise HighlighterError(f"--mask {path}: cannot read a .npy array ({e})") from None
    try:
        return check_mask(mask, n)
    except ValueError as e:
        raise HighlighterError(f"--mask {path}: {e}") from None


def panels(res) -> np.ndarray:
    v = res.views
    hidden = res.mask.mean()
    picture = side_by_side(
        [to_display(v.original), to_display(v.masked), to_display(v.reconstruction), to_display(v.paste)],
        ["original", f"masked ({hidden:.0%} hidden)", "reconstruction", "reconstruction + visible"])
    return label(picture, v.note)


def run(args) -> int:
    norm_pix = {"auto": None, "yes": True, "no": False}[args.norm_pix]
    ck = load_checkpoint(resolve_checkpoint(args.checkpoint, "mae"), checkpoint_key=args.checkpoint_key,
                         num_heads=args.num_heads, decoder_num_heads=args.decoder_num_heads, norm_pix=norm_pix)
    try:
        engine = MAEEngine(ck, args.device)
    except ValueError as e:
        raise HighlighterError(str(e)) from None
    report_model(ck)
    if not 0.0 <= args.mask_ratio < 1.0:
        raise HighlighterError(f"--mask-ratio must be in [0, 1), got {args.mask_ratio}")
    mask = read_mask_file(args.mask, engine.num_patches) if args.mask else None
    batch = PhotoBatch(args.images, args.out, "mae")
    for path, img in batch:
        res = engine.run(img, args.mask_ratio, args.seed, mask, args.denorm)
        stem = batch.names.stem(path)
        np.savez_compressed(batch.out / f"{stem}.npz", mask=res.mask, pred=res.pred.astype(np.float32),
                            paste=res.views.paste.astype(np.float32), original=res.views.original.astype(np.float32))
        save_png(batch.out / f"{stem}.png", panels(res))
        info(f"{path} -> {batch.out / stem}.png ({int(res.mask.sum())}/{res.mask.size} patches hidden, "
             f"masked-patch loss {res.loss:.4f}); {res.views.note}")
        batch.done += 1
    return batch.finish()
