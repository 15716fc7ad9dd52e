"""``highlighter export``: our training checkpoints in the official layouts, or as small safetensors."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from highlighter.commands.common import info, warn
from highlighter.config import KNOWN_DECODER_HEADS, default_num_heads
from highlighter.core.checkpoint import (
    atomic_write,
    build_attention_model,
    load_checkpoint,
    read_checkpoint_file,
    save_model,
)
from highlighter.errors import HighlighterError


def provenance(path: str, key: str) -> dict:
    """How a training run's checkpoint was made (recipe, data folders, epochs, images, hours), for the file's
    header; empty for anything that is not one of our training checkpoints."""
    if str(path).startswith("random:"):
        return {}
    obj, _ = read_checkpoint_file(path)
    meta = obj.get("highlighter") if isinstance(obj, dict) else None
    if not isinstance(meta, dict) or "train" not in meta:
        return {}
    return {"trained": {"task": meta.get("kind"), "weights": key if meta.get("kind") == "dino" else "model",
                        "recipe": meta["train"], "data": meta.get("data"), "images": meta.get("images"),
                        "epochs_done": obj.get("epoch"), "steps": obj.get("global_step"),
                        "images_seen": obj.get("images_seen"),
                        "hours": round(float(obj.get("elapsed_s") or 0.0) / 3600, 2),
                        "world_size": meta.get("world_size")}}


def run(args) -> int:
    from highlighter.weights import resolve

    args.checkpoint = resolve(args.checkpoint)  # the name of downloaded official weights -> its file
    ck = load_checkpoint(args.checkpoint, checkpoint_key=args.checkpoint_key)
    out = Path(args.out)
    fmt = args.format
    if fmt == "auto":
        fmt = {".safetensors": "safetensors", ".onnx": "onnx"}.get(out.suffix) or (
            "mae" if ck.decoder is not None else "dino")
    encoder = {k: v for k, v in ck.state.items() if not (k.startswith("decoder") or k == "mask_token"
                                                          or k.startswith("head."))}
    if fmt == "dino":
        build_attention_model(ck)  # validates that the backbone is complete
        atomic_write(out, lambda tmp: torch.save(encoder, tmp))  # DINO's backbone-only layout: a bare state dict
        what = "official DINO backbone layout (bare state dict)"
    elif fmt == "mae":
        if ck.decoder is None:
            raise HighlighterError(f"{args.checkpoint} has no MAE decoder to export in the MAE layout")
        # main_pretrain.py's layout: models_mae.py keys under 'model', the run's args beside them
        margs = argparse.Namespace(model=f"mae_{ck.vit.arch_name.replace('/', '_patch')}",
                                   norm_pix_loss=ck.decoder.norm_pix_loss,
                                   input_size=ck.vit.pos_grid * ck.vit.patch_size)
        atomic_write(out, lambda tmp: torch.save({"model": dict(ck.state), "args": margs}, tmp))
        what = "official MAE layout ({'model': ..., 'args': ...})"
    elif fmt == "safetensors":
        dtype = torch.float16 if args.half else None
        state = dict(ck.state) if ck.decoder is not None and args.with_decoder else encoder
        kind = "mae" if ck.decoder is not None else "dino"
        extra = provenance(args.checkpoint, args.checkpoint_key)
        if args.card:
            from highlighter.card import read_card

            extra["card"] = read_card(args.card)
        save_model(out, kind, ck.vit, state, ck.decoder if state is not encoder else None, dtype=dtype,
                   source=ck.source, **extra)
        what = f"highlighter safetensors ({'fp16' if args.half else 'fp32'})"
    elif fmt == "onnx":
        from highlighter.runtime.export import LiveModel, export_onnx, quantize_int8

        size = args.image_size if isinstance(args.image_size, tuple) else (args.image_size, args.image_size)
        try:
            live = LiveModel(build_attention_model(ck).vit, ck.vit, size, with_features=args.features)
        except ValueError as e:
            raise HighlighterError(str(e)) from None
        if args.int8:
            fp32 = export_onnx(live, out.with_suffix(".fp32.onnx"))
            quantize_int8(fp32, out)
            fp32.unlink()
        else:
            export_onnx(live, out)
        outputs = "attention (1, heads, h, w)" + (" and features (1, D)" if args.features else "")
        what = (f"ONNX{' int8' if args.int8 else ''}, input image (1, 3, {size[0]}, {size[1]}) RGB float 0-255, "
                f"output {outputs}")
    else:
        raise HighlighterError(f"unknown --format {fmt}")
    info(f"wrote {out} ({what}, {out.stat().st_size / 1e6:.1f} MB) from {ck.source}")
    if fmt in ("dino", "mae"):  # the official layouts cannot store head counts
        flags = []
        if ck.vit.num_heads != default_num_heads(ck.vit.embed_dim, ck.vit.depth):
            flags.append(f"--num-heads {ck.vit.num_heads}")
        d = ck.decoder
        if fmt == "mae" and d.num_heads != default_num_heads(d.embed_dim, d.depth, KNOWN_DECODER_HEADS):
            flags.append(f"--decoder-num-heads {d.num_heads}")
        if flags:
            warn(f"the official layout does not store head counts: load {out.name} with {' '.join(flags)}")
    return 0
