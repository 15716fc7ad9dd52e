"""``highlighter mae``: masked-autoencoder reconstructions as in the official demo notebook."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from highlighter.commands.common import OutputNames, info, report_model, resolve_checkpoint, warn
from highlighter.core.checkpoint import load_checkpoint
from highlighter.core.engine import MAEEngine
from highlighter.core.mae import to_display
from highlighter.errors import HighlighterError, ImageError
from highlighter.images import expand_inputs, load_rgb
from highlighter.render import label, save_png, side_by_side


def read_mask_file(path: str, n: int) -> np.ndarray:
    try:
        mask = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise HighlighterError(f"--mask {path}: cannot read a .npy array ({e})") from None
    mask = np.asarray(mask).reshape(-1)
    if mask.shape[0] != n or not np.isin(mask, (0, 1)).all():
        raise HighlighterError(f"--mask {path}: need {n} zeros and ones (1 = hidden), got {mask.size} values")
    if mask.all():
        raise HighlighterError(f"--mask {path}: every patch is hidden; leave at least one visible")
    return mask.astype(np.uint8)


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
    files, problems = expand_inputs(args.images)
    for p in problems:
        warn(p)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names, done, skipped = OutputNames(), 0, 0
    for path in tqdm(files, desc="mae", unit="img", disable=None if len(files) > 1 else True):
        try:
            img = load_rgb(path)
        except ImageError as e:
            warn(f"skipped {e}")
            skipped += 1
            continue
        res = engine.run(img, args.mask_ratio, args.seed, mask, args.denorm)
        stem = names.stem(path)
        np.savez_compressed(out / f"{stem}.npz", mask=res.mask, pred=res.pred.astype(np.float32),
                            paste=res.views.paste.astype(np.float32), original=res.views.original.astype(np.float32))
        save_png(out / f"{stem}.png", panels(res))
        info(f"{path} -> {out / stem}.png ({int(res.mask.sum())}/{res.mask.size} patches hidden, "
             f"masked-patch loss {res.loss:.4f})")
        done += 1
    if done:
        info(f"note: {res.views.note}")
    if done == 0:
        raise HighlighterError("no image could be processed" + (f" ({skipped} unreadable)" if skipped else ""))
    info(f"wrote {done} result(s) to {out}" + (f"; skipped {skipped} unreadable file(s)" if skipped else ""))
    return 0
