"""``highlighter mae``: masked-autoencoder reconstructions as in the official demo notebook."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from highlighter.commands.common import PhotoBatch, info, report_model, resolve_checkpoint
from highlighter.core.formats import load_checkpoint
from highlighter.core.inference import MAEEngine
from highlighter.core.mae import check_mask
from highlighter.errors import HighlighterError
from highlighter.results import write_mae


def read_mask_file(path: str, n: int) -> np.ndarray:
    try:
        mask = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise HighlighterError(f"--mask {path}: cannot read a .npy array ({e})") from None
    try:
        return check_mask(mask, n)
    except ValueError as e:
        raise HighlighterError(f"--mask {path}: {e}") from None


def run(args) -> int:
    norm_pix = {"auto": None, "yes": True, "no": False}[args.norm_pix]
    spec = resolve_checkpoint(args.checkpoint, "mae")  # a name, the photos, --out and --mask: checked before loading
    batch = PhotoBatch(args.images, args.out, "mae")
    if args.mask and not Path(args.mask).is_file():
        raise HighlighterError(f"--mask {args.mask}: no such file")
    ck = load_checkpoint(spec, checkpoint_key=args.checkpoint_key,
                         num_heads=args.num_heads, decoder_num_heads=args.decoder_num_heads, norm_pix=norm_pix)
    try:
        engine = MAEEngine(ck, args.device)
    except ValueError as e:
        raise HighlighterError(str(e)) from None
    report_model(ck)
    mask = read_mask_file(args.mask, engine.num_patches) if args.mask else None
    for path, img in batch:
        res = engine.run(img, args.mask_ratio, args.seed, mask, args.denorm)
        stem = batch.names.stem(path)
        write_mae(batch.folder(), stem, res)
        info(f"{path} -> {batch.out / stem}.png ({int(res.mask.sum())}/{res.mask.size} patches hidden, "
             f"masked-patch loss {res.loss:.4f}); {res.views.note}")
        batch.done += 1
    return batch.finish()
