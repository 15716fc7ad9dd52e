"""``highlighter export``: our training checkpoints in the official layouts, or as small safetensors."""

from __future__ import annotations

from pathlib import Path

from highlighter.commands.common import info, resolve_checkpoint, warn
from highlighter.core.formats import load_checkpoint
from highlighter.core.save import export_dino, export_mae, export_safetensors, head_count_flags, provenance
from highlighter.errors import HighlighterError


def run(args) -> int:
    # the same names as every command: 'default' (models/'s DINO, or its MAE for --format mae), an official
    # name (its downloaded file), random:ARCH/PATCH, or a path
    args.checkpoint = resolve_checkpoint(args.checkpoint, "mae" if args.format == "mae" else "attention")
    ck = load_checkpoint(args.checkpoint, checkpoint_key=args.checkpoint_key)
    out = Path(args.out)
    fmt = args.format
    if fmt == "auto":
        fmt = {".safetensors": "safetensors", ".onnx": "onnx"}.get(out.suffix) or (
            "mae" if ck.decoder is not None else "dino")
    if fmt == "dino":
        export_dino(ck, out)
        what = ("official DINOv3 backbone layout (bare state dict)" if ck.vit.rope else
                "official DINO backbone layout (bare state dict)")
    elif fmt == "mae":
        export_mae(ck, out)
        what = "official MAE layout ({'model': ..., 'args': ...})"
    elif fmt == "safetensors":
        extra = provenance(args.checkpoint, args.checkpoint_key)
        if args.card:
            from highlighter.card import read_card

            extra["card"] = read_card(args.card)
        export_safetensors(ck, out, half=args.half, with_decoder=args.with_decoder, **extra)
        what = f"highlighter safetensors ({'fp16' if args.half else 'fp32'})"
    elif fmt == "onnx":
        from highlighter.runtime.export import export_live

        size = tuple(args.image_size)  # H W: a graph has one input size
        try:
            export_live(ck, out, size, int8=args.int8, with_features=args.features)
        except ValueError as e:
            raise HighlighterError(str(e)) from None
        outputs = "attention (1, heads, h, w)" + (" and features (1, D)" if args.features else "")
        what = (f"ONNX{' int8' if args.int8 else ''}, input image (1, 3, {size[0]}, {size[1]}) RGB float 0-255, "
                f"output {outputs}")
    else:
        raise HighlighterError(f"unknown --format {fmt}")
    info(f"wrote {out} ({what}, {out.stat().st_size / 1e6:.1f} MB) from {ck.source}")
    flags = head_count_flags(ck, fmt) if fmt in ("dino", "mae") else []
    if flags:
        warn(f"the official layout does not store head counts: load {out.name} with {' '.join(flags)}")
    return 0
