"""Building models from a recognised checkpoint, loading every tensor strictly: a file that does not fit is an
error, never a half-loaded or random model."""

from __future__ import annotations

import re

import torch
import torch.nn as nn

from highlighter.core.formats import DECODER_KEYS, SILENTLY_IGNORED, LoadedCheckpoint
from highlighter.errors import CheckpointError


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
        if k in used or SILENTLY_IGNORED.match(k) or (also_ignore and also_ignore.match(k)):
            continue
        out.append(k)
    return out


def build_attention_model(ck: LoadedCheckpoint, device: str | torch.device = "cpu"):
    """An ``AttentionViT`` (eval mode) with the checkpoint's encoder weights loaded strictly.

    Sets ``ck.unexpected`` to the keys that were neither used nor known to be ignorable.
    """
    from highlighter.core.attention import AttentionViT
    from highlighter.core.backbone import build_vit

    vit = build_vit(ck.vit, init=False)  # every tensor is loaded next, strictly
    _load_strict(vit, ck.state, ck.vit.describe())
    ck.unexpected = _unexpected(ck, set(vit.state_dict()), DECODER_KEYS)
    return AttentionViT(vit, ck.vit).eval().to(device)


def is_dino(ck: LoadedCheckpoint) -> bool:
    """A DINO file: our header says so (its kind, or the task it was trained for), or it was recognised as one."""
    meta = ck.meta or {}
    trained = meta.get("trained") if isinstance(meta.get("trained"), dict) else {}
    return meta.get("kind") == "dino" or trained.get("task") == "dino" or "dino" in ck.source.lower()


def no_decoder_message(ck: LoadedCheckpoint) -> str:
    """Why a file cannot reconstruct: a DINO checkpoint never had an MAE decoder; an MAE 'pretrain' release
    had one, and it was dropped."""
    if is_dino(ck):
        return (f"{ck.name} is a DINO checkpoint ({ck.source}) with no MAE decoder: DINO training makes none, so "
                "there is nothing to reconstruct with; use an MAE checkpoint with its decoder (this one still "
                "gives attention maps)")
    return (f"{ck.name} has no MAE decoder ({ck.source}): the released MAE 'pretrain' files are encoder-only; "
            "use a 'visualize' or full training checkpoint to see reconstructions (attention maps still work)")


def build_mae_model(ck: LoadedCheckpoint, device: str | torch.device = "cpu"):
    """A ``MaskedAutoencoder`` (eval mode) with encoder and decoder loaded strictly."""
    from highlighter.core.mae import MaskedAutoencoder

    if ck.decoder is None:
        raise CheckpointError(no_decoder_message(ck))
    if ck.vit.layerscale or ck.vit.num_register_tokens or ck.vit.swiglu:
        raise CheckpointError(f"{ck.name}: a decoder on a DINOv2-style encoder is not an MAE we know")
    model = MaskedAutoencoder(ck.vit, ck.decoder)
    _load_strict(model, ck.state, f"MAE {ck.vit.describe()} + decoder dim {ck.decoder.embed_dim}")
    ck.unexpected = _unexpected(ck, set(model.state_dict()))
    return model.eval().to(device)
