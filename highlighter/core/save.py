"""Writing checkpoints: our own format (a plain-dict header, ``.safetensors`` or ``.pth``) and the official
DINO and MAE layouts, always atomically."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch

from highlighter.config import KNOWN_DECODER_HEADS, MAEDecoderConfig, ViTConfig, default_num_heads
from highlighter.core.formats import LoadedCheckpoint, encoder_state
from highlighter.core.safe_read import read_checkpoint_file
from highlighter.errors import CheckpointError
from highlighter.fileio import atomic_write

FORMAT_VERSION = 1


def make_meta(kind: str, vit: ViTConfig, decoder: MAEDecoderConfig | None = None, **extra: Any) -> dict:
    """The plain-dict header that our checkpoints carry under the key 'highlighter'."""
    return {"format_version": FORMAT_VERSION, "kind": kind, "vit": vit.to_dict(),
            "decoder": decoder.to_dict() if decoder else None, **extra}


def save_model(path: str | os.PathLike, kind: str, vit: ViTConfig, state: dict[str, torch.Tensor],
               decoder: MAEDecoderConfig | None = None, dtype: torch.dtype | None = None, **extra: Any) -> Path:
    """Write weights in our format, atomically: ``.safetensors`` (header in its metadata) or ``.pth``."""
    path = Path(path)
    meta = make_meta(kind, vit, decoder, **extra)
    tensors = {k: (v.to(dtype) if dtype and v.is_floating_point() else v).detach().cpu().contiguous()
               for k, v in state.items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"highlighter": json.dumps(meta)}))
    else:
        atomic_write(path, lambda tmp: torch.save({"highlighter": meta, "model": tensors}, tmp))
    return path


def export_dino(ck: LoadedCheckpoint, path: str | os.PathLike) -> Path:
    """DINO's backbone-only layout: a bare state dict of the encoder in the official keys (a DINOv3 model's in the
    official DINOv3 layout, which its own code loads strictly)."""
    from highlighter.core.build import build_attention_model

    build_attention_model(ck)  # validates that the backbone is complete
    encoder = encoder_state(ck.state)
    if ck.vit.rope:
        encoder = dinov3_official_state(encoder, ck.vit.swiglu)
    atomic_write(path, lambda tmp: torch.save(encoder, tmp))
    return Path(path)


def dinov3_official_state(state: dict[str, torch.Tensor], swiglu: bool = False) -> dict[str, torch.Tensor]:
    """Our DINOv3 keys -> the official ``DinoVisionTransformer``'s: ``storage_tokens``, a zero ``mask_token``, the
    qkv ``bias_mask`` (ones, zeros for the key third: our ``qkv.bias`` has the mask folded in already), SwiGLU as
    ``w1``/``w2``/``w3``. The inverse of what ``core.formats`` reads."""
    out: dict[str, torch.Tensor] = {}
    dim = state["cls_token"].shape[-1]
    for k, v in state.items():
        if k == "register_tokens":
            k = "storage_tokens"
        if swiglu and ".mlp.fc1." in k:
            w1, w2 = v.chunk(2, dim=0)
            out[k.replace(".fc1.", ".w1.")], out[k.replace(".fc1.", ".w2.")] = w1.clone(), w2.clone()
            continue
        if swiglu and ".mlp.fc2." in k:
            k = k.replace(".fc2.", ".w3.")
        out[k] = v
        if k.endswith(".attn.qkv.weight"):  # every release has a qkv bias: timm's bias-free layout gets zeros
            bias = state.get(k[: -len("weight")] + "bias", torch.zeros(v.shape[0], dtype=v.dtype))
            mask = torch.ones_like(bias)
            mask[bias.shape[0] // 3: 2 * bias.shape[0] // 3] = 0
            out[k[: -len("weight")] + "bias"], out[k[: -len("weight")] + "bias_mask"] = bias, mask
    out.setdefault("mask_token", torch.zeros(1, dim))
    return out


def export_mae(ck: LoadedCheckpoint, path: str | os.PathLike) -> Path:
    """main_pretrain.py's layout: models_mae.py keys under 'model', the run's args beside them."""
    if ck.decoder is None:
        raise CheckpointError(f"{ck.name} has no MAE decoder to export in the MAE layout")
    margs = argparse.Namespace(model=f"mae_{ck.vit.arch_name.replace('/', '_patch')}",
                               norm_pix_loss=ck.decoder.norm_pix_loss, input_size=ck.vit.pos_grid * ck.vit.patch_size)
    atomic_write(path, lambda tmp: torch.save({"model": dict(ck.state), "args": margs}, tmp))
    return Path(path)


def export_safetensors(ck: LoadedCheckpoint, path: str | os.PathLike, half: bool = False,
                       with_decoder: bool = False, **extra: Any) -> Path:
    """Our small format: the encoder (and, for an MAE with ``with_decoder``, the decoder), fp32 or fp16."""
    keep_decoder = ck.decoder is not None and with_decoder
    state = dict(ck.state) if keep_decoder else encoder_state(ck.state)
    kind = "mae" if ck.decoder is not None else "dino"
    return save_model(path, kind, ck.vit, state, ck.decoder if keep_decoder else None,
                      dtype=torch.float16 if half else None, source=ck.source, **extra)


def provenance(path: str | os.PathLike, key: str = "teacher") -> dict:
    """How a training run's checkpoint was made (recipe, data folders, epochs, images, hours), for an exported
    file's header; empty for anything that is not one of our training checkpoints."""
    if str(path).startswith("random:"):
        return {}
    obj, sf_meta = read_checkpoint_file(path)
    if sf_meta is not None:  # one of our exported files (or a run's probe_best): its provenance travels on
        try:
            meta = json.loads(sf_meta.get("highlighter", "{}"))
        except ValueError:
            return {}
        trained = meta.get("trained") if isinstance(meta, dict) else None
        return {"trained": trained} if isinstance(trained, dict) else {}
    meta = obj.get("highlighter") if isinstance(obj, dict) else None
    if not isinstance(meta, dict) or "train" not in meta:
        return {}
    return {"trained": {"task": meta.get("kind"), "weights": key if meta.get("kind") == "dino" else "model",
                        "recipe": meta["train"], "data": meta.get("data"), "images": meta.get("images"),
                        "epochs_done": obj.get("epoch"), "steps": obj.get("global_step"),
                        "images_seen": obj.get("images_seen"),
                        "hours": round(float(obj.get("elapsed_s") or 0.0) / 3600, 2),
                        "world_size": meta.get("world_size")}}


def head_count_flags(ck: LoadedCheckpoint, fmt: str) -> list[str]:
    """The official layouts cannot store head counts: the flags needed to load an export when they are not
    the official ones."""
    flags = []
    if ck.vit.num_heads != default_num_heads(ck.vit.embed_dim, ck.vit.depth):
        flags.append(f"--num-heads {ck.vit.num_heads}")
    d = ck.decoder
    if fmt == "mae" and d is not None and d.num_heads != default_num_heads(d.embed_dim, d.depth, KNOWN_DECODER_HEADS):
        flags.append(f"--decoder-num-heads {d.num_heads}")
    return flags
