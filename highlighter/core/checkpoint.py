"""Load every supported checkpoint format safely, and infer the ViT from its keys.

Formats: official DINO backbone-only ``.pth`` and full training checkpoints (``teacher``/``student``,
``module.``/``backbone.`` prefixes, heads ignored); official DINOv2 files, with or without register
tokens (block chunks flattened); official MAE checkpoints (``{'model': ...}``, with or without the
decoder); timm state dicts and ``.safetensors`` for DINO, DINOv2 and MAE models; and our own files.

Nothing here executes code from a file: pickles are read with ``torch.load(weights_only=True)``,
allow-listing only ``argparse.Namespace`` (official files store their ``args`` that way).
Every problem raises ``CheckpointError`` with a one-line message that names it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import re
import struct
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from highlighter.config import (
    ARCH_DIMS,
    KNOWN_DECODER_HEADS,
    MAEDecoderConfig,
    ViTConfig,
    default_num_heads,
)
from highlighter.errors import CheckpointError

FORMAT_VERSION = 1
_SILENTLY_IGNORED = re.compile(r"^(head\.|fc_norm\.|mask_token$)")  # classifier / DINO head / DINOv2 iBOT token


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

    @property
    def name(self) -> str:
        return Path(self.path).name if self.path else self.source


# ============================================================================= reading bytes safely
def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 0 < n <= size - 8 and head[8:9] == b"{"


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            return {k: f.get_tensor(k) for k in f.keys()}, meta
    except Exception as e:  # the library raises several types for bad headers and short files
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise CheckpointError(f"{path}: not a valid safetensors file (truncated or corrupt: {reason})") from None


def read_checkpoint_file(path: str | os.PathLike) -> tuple[Any, dict[str, str] | None]:
    """Return (object, safetensors metadata or None for a pickle) without running any code from the file."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.is_dir():
        raise CheckpointError(f"{p} is a folder, not a checkpoint file")
    size = p.stat().st_size
    if size == 0:
        raise CheckpointError(f"{p}: the file is empty")
    with open(p, "rb") as f:
        head = f.read(16)
    if _is_safetensors(head, size):
        return _read_safetensors(p)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch's note on pickle protocols: the error says it all
            return torch.load(p, map_location="cpu", weights_only=True), None
    except pickle.UnpicklingError as e:
        msg = str(e)
        named = re.search(r"GLOBAL ([\w.]+)", msg)
        imports = [named.group(1)] if named else [g for g in pickle_imports(p) if g not in _SAFE_GLOBALS]
        if imports:
            raise CheckpointError(f"{p}: refused to load: the file would import Python code ({imports[0]}); "
                                  "highlighter never executes code from checkpoints") from None
        if "truncated" in msg or "ran out of input" in msg.lower():
            raise CheckpointError(f"{p}: the file is truncated or corrupt") from None
        raise CheckpointError(f"{p}: not a PyTorch or safetensors checkpoint") from None
    except (EOFError, zipfile.BadZipFile):
        raise CheckpointError(f"{p}: the file is truncated or corrupt") from None
    except RuntimeError as e:
        msg = str(e)
        if "zip archive" in msg or "central directory" in msg or "file not found" in msg.lower():
            raise CheckpointError(f"{p}: the file is truncated or corrupt (bad zip archive)") from None
        raise CheckpointError(f"{p}: cannot be read as a checkpoint ({msg.splitlines()[0][:120]})") from None
    except (ValueError, OSError, KeyError, TypeError, AttributeError, IndexError):
        raise CheckpointError(f"{p}: not a PyTorch or safetensors checkpoint") from None


_SAFE_GLOBALS = {"collections.OrderedDict", "argparse.Namespace", "torch._utils._rebuild_tensor_v2",
                 "torch._utils._rebuild_parameter", "torch.FloatStorage", "torch.HalfStorage",
                 "torch.BFloat16Storage", "torch.LongStorage", "torch.IntStorage", "torch.BoolStorage",
                 "torch.DoubleStorage", "torch.ByteStorage", "torch.storage.UntypedStorage"}


def pickle_imports(path: Path) -> list[str]:
    """The ``module.name`` globals a pickle (or torch zip archive) would import, read from its opcodes
    with pickletools, so that nothing in it is executed."""
    import pickletools

    data = path.read_bytes()
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                data = z.read(name) if name else b""
        except (zipfile.BadZipFile, OSError, KeyError):
            return []
    found, strings = [], []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                strings.append(str(arg))
            elif op.name == "GLOBAL":
                found.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
    except Exception:  # a damaged stream: report what was seen before the damage
        pass
    return found


# ============================================================================= unwrapping formats
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
    m = re.fullmatch(r"(vit_[a-z]+)(?:[/_](?:patch)?(\d+))?", arch.strip().lower())
    if not m or m.group(1) not in ARCH_DIMS:
        raise CheckpointError(f"unknown architecture {arch!r}; use one of {', '.join(ARCH_DIMS)} (optionally /PATCH)")
    return m.group(1), int(m.group(2)) if m.group(2) else None


def _infer_vit(state: dict[str, torch.Tensor], swiglu: bool, meta: dict, args: Any, num_heads: int | None) -> ViTConfig:
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


def _describe_source(source: str, state: dict, had_reg_token: bool, safetensors: bool) -> str:
    if source != "state dict":
        return source
    if had_reg_token:
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
    obj, sf_meta = read_checkpoint_file(path)
    is_sf = sf_meta is not None
    state, meta, source, args = _unwrap(obj, sf_meta, checkpoint_key)
    had_reg_token = "reg_token" in _strip_prefixes(state)
    state, swiglu = _normalise_keys(state)
    vit = _infer_vit(state, swiglu, meta, args, num_heads)
    if arch:
        name, patch = _parse_arch(arch)
        if ARCH_DIMS[name] != vit.embed_dim or (patch and patch != vit.patch_size):
            raise CheckpointError(f"{Path(path).name} holds a {vit.describe()}, not a {arch}")
    decoder, known = _infer_decoder(state, vit, meta, args, decoder_num_heads, norm_pix)
    if decoder is None and "mask_token" in state and state["mask_token"].ndim == 3:
        raise CheckpointError("incomplete MAE checkpoint: mask_token is present but decoder_embed is not")
    return LoadedCheckpoint(path=str(path), source=_describe_source(source, state, had_reg_token, is_sf), vit=vit,
                            state=state, decoder=decoder, norm_pix_known=known,
                            meta=meta if isinstance(meta, dict) else {})


def random_checkpoint(spec: str, num_heads: int | None = None, seed: int = 0) -> LoadedCheckpoint:
    """``vit_small/16`` -> random timm weights of that architecture (for demos and benchmarks only)."""
    from highlighter.core.backbone import build_vit

    name, patch = _parse_arch(spec)
    dim = ARCH_DIMS[name]
    depth = {"vit_large": 24, "vit_huge": 32, "vit_giant": 40}.get(name, 12)
    cfg = ViTConfig(embed_dim=dim, depth=depth, num_heads=num_heads or default_num_heads(dim, depth),
                    patch_size=patch or 16, pos_grid=224 // (patch or 16), mlp_hidden=4 * dim)
    torch.manual_seed(seed)
    state = {k: v.detach().clone() for k, v in build_vit(cfg).state_dict().items()}
    return LoadedCheckpoint(path="", source=f"random weights ({cfg.arch_name}, untrained)", vit=cfg, state=state)


# ============================================================================= building models
def _load_strict(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise CheckpointError(f"{what}: the checkpoint lacks {', '.join(missing[:3])}{more}")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{what}: {k} has shape {tuple(state[k].shape)} in the checkpoint, "
                                  f"the model expects {tuple(v.shape)} (a ViT of another size?)")
    module.load_state_dict({k: state[k] for k in expected}, strict=True)


def _unexpected(ck: LoadedCheckpoint, used: set[str], also_ignore: re.Pattern | None = None) -> list[str]:
    out = []
    for k in ck.state:
        if k in used or _SILENTLY_IGNORED.match(k) or (also_ignore and also_ignore.match(k)):
            continue
        out.append(k)
    return out


def build_attention_model(ck: LoadedCheckpoint, device: str | torch.device = "cpu"):
    """An ``AttentionViT`` (eval mode) with the checkpoint's encoder weights loaded strictly.

    Sets ``ck.unexpected`` to the keys that were neither used nor known to be ignorable.
    """
    from highlighter.core.backbone import AttentionViT, build_vit

    vit = build_vit(ck.vit)
    _load_strict(vit, ck.state, ck.vit.describe())
    ck.unexpected = _unexpected(ck, set(vit.state_dict()), re.compile(r"^(decoder_|mask_token)"))
    return AttentionViT(vit, ck.vit).eval().to(device)


def build_mae_model(ck: LoadedCheckpoint, device: str | torch.device = "cpu"):
    """A ``MaskedAutoencoder`` (eval mode) with encoder and decoder loaded strictly."""
    from highlighter.core.mae import MaskedAutoencoder

    if ck.decoder is None:
        raise CheckpointError(
            f"{ck.name} has no MAE decoder ({ck.source}): the released MAE 'pretrain' files are encoder-only; "
            "use a 'visualize' or full training checkpoint to see reconstructions (attention maps still work)")
    if ck.vit.layerscale or ck.vit.num_register_tokens or ck.vit.swiglu:
        raise CheckpointError(f"{ck.name}: a decoder on a DINOv2-style encoder is not an MAE we know")
    model = MaskedAutoencoder(ck.vit, ck.decoder)
    _load_strict(model, ck.state, f"MAE {ck.vit.describe()} + decoder dim {ck.decoder.embed_dim}")
    ck.unexpected = _unexpected(ck, set(model.state_dict()))
    return model.eval().to(device)


# ============================================================================= our own files
def atomic_write(path: Path, write) -> None:
    """Write through ``write(tmp_path)`` into a temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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



def random_mae_checkpoint(seed: int = 0) -> LoadedCheckpoint:
    """An untrained ViT-Ti/16 MAE with a small decoder, for demos when no MAE model is available."""
    from highlighter.core.mae import MaskedAutoencoder, init_mae_weights

    vit = ViTConfig(embed_dim=192, depth=12, num_heads=3, patch_size=16, pos_grid=14, mlp_hidden=768)
    dec = MAEDecoderConfig(embed_dim=128, depth=2, num_heads=4, mlp_hidden=512)
    torch.manual_seed(seed)
    model = MaskedAutoencoder(vit, dec)
    init_mae_weights(model)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return LoadedCheckpoint(path="", source="random weights (MAE vit_tiny/16, untrained)", vit=vit, state=state,
                            decoder=dec)
