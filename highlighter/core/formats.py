"""Recognising a checkpoint: which format a file is in, the ViT (and MAE decoder) its tensors describe, and
the weights in the official key layout.

Formats: official DINO backbone-only ``.pth`` and full training checkpoints (``teacher``/``student``,
``module.``/``backbone.`` prefixes, heads ignored); official DINOv2 files, with or without register tokens
(block chunks flattened); official DINOv3 ViT files (RoPE, ``storage_tokens``) and timm's DINOv3 layout;
official MAE checkpoints (``{'model': ...}``, with or without the decoder); timm state dicts and
``.safetensors`` for DINO, DINOv2 and MAE models; and our own files. Reading the bytes is
``core.safe_read``'s job, building models ``core.build``'s, writing files ``core.save``'s.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from highlighter.config import (
    ARCH_DIMS,
    KNOWN_DECODER_HEADS,
    MAEDecoderConfig,
    ViTConfig,
    arch_config,
    default_num_heads,
    parse_arch,
)
from highlighter.core.safe_read import read_checkpoint_file
from highlighter.errors import CheckpointError

# classifier / DINO head / DINOv2 and DINOv3 iBOT token / DINOv3's training-only norm of the local crops' class token
SILENTLY_IGNORED = re.compile(r"^(head\.|fc_norm\.|mask_token$|local_cls_norm\.)")
DECODER_KEYS = re.compile(r"^(decoder_|mask_token$)")  # the MAE decoder (its mask token included)


def encoder_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The encoder's weights: everything but the MAE decoder and the classifier / DINO head."""
    return {k: v for k, v in state.items() if not (DECODER_KEYS.match(k) or k.startswith("head."))}


@dataclass
class LoadedCheckpoint:
    """A checkpoint reduced to the official key layout, float32, with the inferred architecture."""

    path: str
    source: str  # what the file was recognised as, for people
    vit: ViTConfig
    state: dict[str, torch.Tensor]  # encoder (and decoder) tensors in the official key layout
    decoder: MAEDecoderConfig | None = None
    norm_pix_known: bool = True  # False when norm_pix_loss could not be read from the file
    unexpected: list[str] = field(default_factory=list)  # keys neither used nor known to be ignorable
    meta: dict = field(default_factory=dict)  # our files' header ('highlighter'): how the model was made
    file_stat: tuple[int, int] | None = None  # the file's (size, mtime_ns) when it was read

    @property
    def name(self) -> str:
        return Path(self.path).name if self.path else self.source


def _tensors_only(d: dict) -> dict[str, torch.Tensor]:
    return {str(k): v for k, v in d.items() if isinstance(v, torch.Tensor)}


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in ("module.", "backbone.", "_orig_mod."):
                if k.startswith(prefix):
                    k, changed = k[len(prefix):], True
        out[k] = v
    return out


def _args_get(args: Any, name: str) -> Any:
    if isinstance(args, argparse.Namespace):
        return getattr(args, name, None)
    if isinstance(args, dict):
        return args.get(name)
    return None


def _unwrap(obj: Any, sf_meta: dict[str, str] | None, key: str) -> tuple[dict[str, torch.Tensor], dict, str, Any]:
    """-> (state, highlighter meta, source description, official args)."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"not a model checkpoint: the file holds a {type(obj).__name__}, not a dict of weights")
    meta: dict = {}
    if sf_meta and "highlighter" in sf_meta:
        try:
            meta = json.loads(sf_meta["highlighter"])
        except ValueError:
            raise CheckpointError("corrupt highlighter header in the safetensors metadata") from None
        return obj, meta, "highlighter checkpoint (safetensors)", None
    if isinstance(obj.get("highlighter"), dict):
        meta = obj["highlighter"]
        wkey = key if isinstance(obj.get(key), dict) else "model"
        if not isinstance(obj.get(wkey), dict):
            raise CheckpointError(f"highlighter checkpoint without '{wkey}' weights")
        what = f", '{wkey}' weights" if wkey != "model" else ""
        return _tensors_only(obj[wkey]), meta, f"highlighter checkpoint{what}", None
    args = obj.get("args")
    if "teacher" in obj or "student" in obj:
        if not isinstance(obj.get(key), dict):
            have = [k for k in ("teacher", "student") if k in obj]
            raise CheckpointError(f"no '{key}' weights in this DINO checkpoint (it has {', '.join(have)})")
        return _tensors_only(obj[key]), meta, f"official DINO training checkpoint, '{key}' weights", args
    for wkey in ("model", "state_dict", "model_ema"):
        if isinstance(obj.get(wkey), dict):
            return _tensors_only(obj[wkey]), meta, f"checkpoint with '{wkey}' weights", args
    state = _tensors_only(obj)
    if not state:
        keys = ", ".join(list(map(str, obj))[:6])
        raise CheckpointError(f"not a model checkpoint: no tensors found (top-level keys: {keys})")
    return state, meta, "state dict", None


DINOV3_ROPE_BASE = 100.0  # every DINOv3 release (dinov3/hub/backbones.py: pos_embed_rope_base=100); timm's too


def _dinov3_to_official(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str | None]:
    """A DINOv3 file in the layout the rest reads: the official one (``storage_tokens``, ``rope_embed.periods``,
    ``attn.qkv.bias_mask``, SwiGLU ``w1/w2/w3``) or timm's (``reg_token``, ``gamma_1/2``, ``q_bias``/``v_bias``,
    ``fc1_g/fc1_x``, no periods) -> registers as ``register_tokens``, the key bias mask folded into
    ``qkv.bias`` (as the official ``LinearKMaskedBias`` applies it), SwiGLU packed as DINOv2's ``fc1``/``fc2``,
    ``rope_embed.periods`` present. Returns (state, "official" | "timm" | None when not DINOv3)."""
    state = _strip_prefixes(state)
    official = "storage_tokens" in state or "rope_embed.periods" in state
    timm_layout = ("reg_token" in state and "pos_embed" not in state
                   and any(re.match(r"^blocks\.\d+\.gamma_1$", k) for k in state))
    if not (official or timm_layout):
        return state, None
    if "cls_norm.weight" in state:
        raise CheckpointError("DINOv3 file with an untied class-token norm (cls_norm): not a released backbone "
                              "layout, not supported")
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k in ("storage_tokens", "reg_token"):
            k = "register_tokens"
        k = re.sub(r"^(blocks\.\d+)\.gamma_([12])$", r"\1.ls\2.gamma", k)
        out[k] = v
    for k in [k for k in out if k.endswith(".attn.qkv.bias_mask")]:
        mask = out.pop(k)
        bias_key = k[: -len("_mask")]
        bias = out.get(bias_key)
        if bias is None:
            raise CheckpointError(f"DINOv3 file with {k} but no {bias_key}")
        if tuple(mask.shape) != tuple(bias.shape):
            raise CheckpointError(f"DINOv3 file: {k} has shape {tuple(mask.shape)}, its bias {tuple(bias.shape)}")
        out[bias_key] = bias.float() * mask.float()
    for k in [k for k in out if k.endswith(".attn.q_bias")]:
        base = k[: -len("q_bias")]
        q, v = out.pop(k), out.pop(base + "v_bias", None)
        if v is None or q.shape != v.shape or q.ndim != 1:
            raise CheckpointError(f"timm DINOv3 file: {k} without a matching {base}v_bias")
        out[base + "qkv.bias"] = torch.cat([q, torch.zeros_like(q), v])  # the key bias is fixed at zero
    for k in [k for k in out if re.match(r"^blocks\.\d+\.mlp\.(w1|fc1_g)\.", k)]:
        gate = k.split(".mlp.")[1].split(".")[0]
        other = k.replace(f".mlp.{gate}.", ".mlp.w2." if gate == "w1" else ".mlp.fc1_x.")
        if other not in out:
            raise CheckpointError(f"DINOv3 file with a SwiGLU {k} but no {other}")
        out[k.replace(f".mlp.{gate}.", ".mlp.fc1.")] = torch.cat([out.pop(k), out.pop(other)])  # silu(gate) * x
    for k in [k for k in out if re.match(r"^blocks\.\d+\.mlp\.w3\.", k)]:
        out[k.replace(".w3.", ".fc2.")] = out.pop(k)
    if official and "rope_embed.periods" not in out:
        raise CheckpointError("DINOv3 file without rope_embed.periods: the RoPE periods its attention needs are "
                              "missing (a truncated or edited file?)")
    # timm does not save the periods: _infer_vit computes them once the heads are known
    return out, "official" if official else "timm"


def _normalise_keys(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], bool]:
    """Official layout, float32: prefixes stripped, DINOv2 block chunks flattened, timm's DINOv2 and
    SwiGLU names mapped back. Returns (state, is_swiglu)."""
    state = _strip_prefixes(state)
    out: dict[str, torch.Tensor] = {}
    swiglu = False
    for k, v in state.items():
        k = re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", k)  # DINOv2 block_chunks > 0
        if re.match(r"^blocks\.\d+\.mlp\.w12\.", k):
            k, swiglu = k.replace(".w12.", ".fc1."), True
        elif re.match(r"^blocks\.\d+\.mlp\.w3\.", k):
            k = k.replace(".w3.", ".fc2.")
        out[k] = v.float() if v.is_floating_point() else v
    if swiglu is False and "blocks.0.mlp.fc1.weight" in out and "blocks.0.mlp.fc2.weight" in out:
        # timm's SwiGLUPacked giant: fc2 takes half of fc1's output
        swiglu = out["blocks.0.mlp.fc2.weight"].shape[1] * 2 == out["blocks.0.mlp.fc1.weight"].shape[0]
    if "reg_token" in out and "register_tokens" not in out:
        # timm's DINOv2-with-registers layout: no class entry in pos_embed, class position folded into cls_token
        out["register_tokens"] = out.pop("reg_token")
        pos = out.get("pos_embed")
        if pos is not None and math.isqrt(pos.shape[1]) ** 2 == pos.shape[1]:
            out["pos_embed"] = torch.cat([torch.zeros_like(pos[:, :1]), pos], dim=1)
    return out, swiglu


def _count_blocks(state: dict[str, torch.Tensor], prefix: str) -> int:
    idx = {int(m.group(1)) for k in state if (m := re.match(rf"^{re.escape(prefix)}\.(\d+)\.", k))}
    if not idx:
        return 0
    missing = sorted(set(range(max(idx) + 1)) - idx)
    if missing:
        raise CheckpointError(f"incomplete checkpoint: {prefix}.{missing[0]} is missing ({len(idx)} of {max(idx) + 1})")
    return max(idx) + 1


def _parse_arch(arch: str) -> tuple[str, int | None]:
    try:
        return parse_arch(arch)
    except ValueError as e:
        raise CheckpointError(str(e)) from None


def _infer_dinov3_heads(state: dict[str, torch.Tensor], dim: int, depth: int, num_heads: int | None) -> int:
    """DINOv3's head count: the RoPE periods hold D_head / 4 values, so the official file says it; timm's file does
    not (dim / 64, as in every DINOv3 ViT but the 7B, unless ``num_heads`` says otherwise), and gets the periods
    the official builder computes (base 100), rounded to bfloat16 as the released official files store them (timm
    itself keeps them in float32, which its model cards name as the one difference from the original outputs)."""
    periods = state.get("rope_embed.periods")
    if periods is None:
        heads = num_heads or max(1, dim // 64)
        if dim % (4 * heads):
            raise CheckpointError(f"{heads} heads do not fit RoPE on dim {dim} (head dim must be a multiple of 4)")
        hd = dim // heads
        periods = DINOV3_ROPE_BASE ** (2 * torch.arange(hd // 4, dtype=torch.float32) / (hd // 2))
        state["rope_embed.periods"] = periods.to(torch.bfloat16).float()
        return heads
    if periods.ndim != 1 or periods.numel() == 0 or dim % (4 * periods.numel()):
        raise CheckpointError(f"rope_embed.periods of shape {tuple(periods.shape)} does not fit a ViT of dim {dim} "
                              "(it holds head dim / 4 values)")
    if not bool(torch.isfinite(periods).all()) or not bool((periods > 0).all()):
        raise CheckpointError("rope_embed.periods holds values that are not positive finite numbers")
    heads = dim // (4 * periods.numel())
    if num_heads and num_heads != heads:
        raise CheckpointError(f"--num-heads {num_heads} contradicts the file's RoPE periods, which are for "
                              f"{heads} heads")
    return heads


def _infer_vit(state: dict[str, torch.Tensor], swiglu: bool, meta: dict, args: Any, num_heads: int | None,
               rope: bool = False) -> ViTConfig:
    pw = state.get("patch_embed.proj.weight")
    if pw is None or pw.ndim != 4:
        sample = ", ".join(list(state)[:4])
        raise CheckpointError(f"not a ViT checkpoint: no patch_embed.proj.weight (keys look like: {sample})")
    dim, chans, p, p2 = pw.shape
    if chans != 3 or p != p2:
        raise CheckpointError(f"unsupported patch embedding of shape {tuple(pw.shape)} (need RGB, square patches)")
    depth = _count_blocks(state, "blocks")
    if depth == 0:
        raise CheckpointError("not a ViT checkpoint: no transformer blocks (blocks.0...)")
    pos = state.get("pos_embed")
    if rope:
        if pos is not None:
            raise CheckpointError("DINOv3 file with a pos_embed: RoPE models have no learned position embedding")
        fc1 = state.get("blocks.0.mlp.fc1.weight")
        if fc1 is None:
            raise CheckpointError("not a ViT checkpoint: blocks.0.mlp.fc1.weight is missing")
        reg = state.get("register_tokens")
        return ViTConfig(
            embed_dim=dim, depth=depth, num_heads=_infer_dinov3_heads(state, dim, depth, num_heads), patch_size=p,
            pos_grid=224 // p, mlp_hidden=int(fc1.shape[0]), swiglu=swiglu, qkv_bias="blocks.0.attn.qkv.bias" in state,
            layerscale="blocks.0.ls1.gamma" in state, num_register_tokens=int(reg.shape[1]) if reg is not None else 0,
            final_norm="norm.weight" in state, pos_interp="rope", norm_eps=1e-5)  # layernormbf16 in every release
    if pos is None:
        raise CheckpointError("not a ViT checkpoint with learned position embeddings: pos_embed is missing")
    grid = math.isqrt(pos.shape[1] - 1)
    if grid * grid != pos.shape[1] - 1 or pos.shape[-1] != dim:
        raise CheckpointError(f"pos_embed of shape {tuple(pos.shape)} does not fit a ViT of dim {dim} "
                              "with a class token")
    fc1 = state.get("blocks.0.mlp.fc1.weight")
    if fc1 is None:
        raise CheckpointError("not a ViT checkpoint: blocks.0.mlp.fc1.weight is missing")
    reg = state.get("register_tokens")
    n_reg = int(reg.shape[1]) if reg is not None else 0
    layerscale = "blocks.0.ls1.gamma" in state
    vit_meta = meta.get("vit") or {}
    heads = num_heads or vit_meta.get("num_heads") or default_num_heads(dim, depth)
    if args is not None and not num_heads and not vit_meta:
        arch = _args_get(args, "arch")
        if isinstance(arch, str) and arch in ARCH_DIMS and ARCH_DIMS[arch] != dim:
            raise CheckpointError(f"inconsistent checkpoint: args.arch is {arch} but the weights have dim {dim}")
    if dim % heads:
        raise CheckpointError(f"{heads} heads do not divide the embedding dim {dim}; pass a valid --num-heads")
    return ViTConfig(
        embed_dim=dim, depth=depth, num_heads=int(heads), patch_size=p, pos_grid=grid, mlp_hidden=int(fc1.shape[0]),
        swiglu=swiglu, qkv_bias="blocks.0.attn.qkv.bias" in state, layerscale=layerscale,
        num_register_tokens=n_reg, final_norm="norm.weight" in state,
        pos_interp=vit_meta.get("pos_interp") or ("dinov2_reg" if n_reg else "dinov2" if layerscale else "dino"),
    )


def _infer_decoder(state, vit: ViTConfig, meta: dict, args: Any, decoder_num_heads: int | None,
                   norm_pix: bool | None) -> tuple[MAEDecoderConfig | None, bool]:
    emb = state.get("decoder_embed.weight")
    if emb is None:
        return None, True
    dd = int(emb.shape[0])
    depth = _count_blocks(state, "decoder_blocks")
    fc1 = state.get("decoder_blocks.0.mlp.fc1.weight")
    if depth == 0 or fc1 is None:
        raise CheckpointError("incomplete MAE checkpoint: decoder_embed is present but the decoder blocks are not")
    dec_meta = meta.get("decoder") or {}
    heads = decoder_num_heads or dec_meta.get("num_heads") or default_num_heads(dd, depth, KNOWN_DECODER_HEADS)
    if dd % heads:
        raise CheckpointError(f"{heads} decoder heads do not divide the decoder dim {dd}; pass --decoder-num-heads")
    known = True
    if norm_pix is None:
        norm_pix = dec_meta.get("norm_pix_loss")
    if norm_pix is None:
        norm_pix = _args_get(args, "norm_pix_loss")
    if norm_pix is None:
        norm_pix, known = False, False
    return MAEDecoderConfig(embed_dim=dd, depth=depth, num_heads=int(heads), mlp_hidden=int(fc1.shape[0]),
                            norm_pix_loss=bool(norm_pix)), known


def _describe_source(source: str, state: dict, had_reg_token: bool, safetensors: bool,
                     dinov3: str | None = None) -> str:
    if source != "state dict":
        return source
    if dinov3 == "official":
        kind = "official DINOv3 backbone"
    elif dinov3 == "timm":
        kind = "timm DINOv3 state dict"
    elif had_reg_token:
        kind = "timm DINOv2-with-registers state dict"
    elif "register_tokens" in state:
        kind = "official DINOv2-with-registers backbone"
    elif "blocks.0.ls1.gamma" in state:
        kind = "DINOv2 backbone (official or timm)"
    else:
        kind = "ViT backbone state dict (official DINO backbone or timm)"
    return kind + (" (safetensors)" if safetensors else "")


def load_checkpoint(path: str | os.PathLike, checkpoint_key: str = "teacher", num_heads: int | None = None,
                    decoder_num_heads: int | None = None, arch: str | None = None,
                    norm_pix: bool | None = None) -> LoadedCheckpoint:
    """Read any supported file (or ``random:ARCH/PATCH``) and return its weights and architecture."""
    if str(path).startswith("random:"):
        return random_checkpoint(str(path)[len("random:"):], num_heads=num_heads)
    st = os.stat(path) if Path(path).is_file() else None  # before reading: a rewrite while it is read shows too
    obj, sf_meta = read_checkpoint_file(path)
    is_sf = sf_meta is not None
    state, meta, source, args = _unwrap(obj, sf_meta, checkpoint_key)
    had_reg_token = "reg_token" in _strip_prefixes(state)
    state, dinov3 = _dinov3_to_official(state)
    state, swiglu = _normalise_keys(state)
    vit = _infer_vit(state, swiglu, meta, args, num_heads, rope=dinov3 is not None)
    if arch:
        name, patch = _parse_arch(arch)
        if ARCH_DIMS[name] != vit.embed_dim or (patch and patch != vit.patch_size):
            raise CheckpointError(f"{Path(path).name} holds a {vit.describe()}, not a {arch}")
    decoder, known = _infer_decoder(state, vit, meta, args, decoder_num_heads, norm_pix)
    if decoder is None and "mask_token" in state and state["mask_token"].ndim == 3:
        raise CheckpointError("incomplete MAE checkpoint: mask_token is present but decoder_embed is not")
    return LoadedCheckpoint(path=str(path), source=_describe_source(source, state, had_reg_token, is_sf, dinov3),
                            vit=vit,
                            state=state, decoder=decoder, norm_pix_known=known,
                            meta=meta if isinstance(meta, dict) else {},
                            file_stat=(st.st_size, st.st_mtime_ns) if st else None)


def random_checkpoint(spec: str, num_heads: int | None = None, seed: int = 0) -> LoadedCheckpoint:
    """``vit_small/16`` -> random timm weights of that architecture (for demos and benchmarks only)."""
    from highlighter.core.backbone import build_vit

    name, patch = _parse_arch(spec)
    cfg = arch_config(name, patch or 16, 224, num_heads=num_heads)
    torch.manual_seed(seed)
    state = {k: v.detach().clone() for k, v in build_vit(cfg).state_dict().items()}
    return LoadedCheckpoint(path="", source=f"random weights ({cfg.arch_name}, untrained)", vit=cfg, state=state)


def random_like(cfg: ViTConfig, seed: int = 0) -> LoadedCheckpoint:
    """Untrained timm weights of exactly ``cfg``'s architecture (position grid included): a trained model's baseline."""
    from highlighter.core.backbone import build_vit

    torch.manual_seed(seed)
    state = {k: v.detach().clone() for k, v in build_vit(cfg).state_dict().items()}
    return LoadedCheckpoint(path="", source=f"random weights ({cfg.arch_name}, untrained, seed {seed})", vit=cfg,
                            state=state)


def random_mae_checkpoint(seed: int = 0) -> LoadedCheckpoint:
    """An untrained ViT-Ti/16 MAE with a small decoder, for demos when no MAE model is available."""
    from highlighter.core.mae import MaskedAutoencoder, init_mae_weights

    vit = arch_config("vit_tiny", 16, 224)
    dec = MAEDecoderConfig(embed_dim=128, depth=2, num_heads=4, mlp_hidden=512)
    torch.manual_seed(seed)
    model = MaskedAutoencoder(vit, dec)
    init_mae_weights(model)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return LoadedCheckpoint(path="", source="random weights (MAE vit_tiny/16, untrained)", vit=vit, state=state,
                            decoder=dec)
