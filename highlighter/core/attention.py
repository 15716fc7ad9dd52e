"""Pure post-processing of class-token attention maps: fusing heads and foreground masks."""

from __future__ import annotations

import torch

MASK_RULES = ("mass", "percentile", "absolute")
DEFAULT_THRESHOLDS = {"mass": 0.6, "percentile": 80.0, "absolute": 0.01}


def mass_mask(attn: torch.Tensor, threshold: float = 0.6) -> torch.Tensor:
    """DINO's rule (visualize_attention.py): keep the top patches holding ``threshold`` of the mass.

    attn: (..., N) non-negative. For each map: sort ascending, divide by the sum, cumulative sum,
    keep where cumsum > 1 - threshold, then unsort. Returns a bool tensor of attn's shape.
    """
    val, idx = torch.sort(attn, dim=-1)
    val = val / val.sum(dim=-1, keepdim=True)
    keep_sorted = torch.cumsum(val, dim=-1) > (1 - threshold)
    return torch.zeros_like(keep_sorted).scatter(-1, idx, keep_sorted)


def percentile_mask(attn: torch.Tensor, percentile: float = 80.0) -> torch.Tensor:
    """Keep patches at or above the given percentile of each map (linear interpolation, as numpy)."""
    q = torch.quantile(attn.float(), percentile / 100.0, dim=-1, keepdim=True)
    return attn >= q.to(attn.dtype)


def absolute_mask(attn: torch.Tensor, cut: float = 0.01) -> torch.Tensor:
    """Keep patches whose raw attention is at least ``cut``."""
    return attn >= cut


def threshold_maps(maps: torch.Tensor, rule: str = "mass", threshold: float | None = None) -> torch.Tensor:
    """Apply a mask rule to maps of shape (..., h, w); returns uint8 (..., h, w) with 1 = foreground."""
    if threshold is None:
        threshold = DEFAULT_THRESHOLDS[rule]
    flat = maps.reshape(*maps.shape[:-2], -1)
    if rule == "mass":
        keep = mass_mask(flat, threshold)
    elif rule == "percentile":
        keep = percentile_mask(flat, threshold)
    elif rule == "absolute":
        keep = absolute_mask(flat, threshold)
    else:
        raise ValueError(f"unknown mask rule {rule!r}; choose from {MASK_RULES}")
    return keep.reshape(maps.shape).to(torch.uint8)


def fuse_heads(attn: torch.Tensor, heads: list[int] | None = None) -> torch.Tensor:
    """Mean over the chosen heads (all by default): (nh, h, w) -> (h, w)."""
    if heads:
        bad = [h for h in heads if not 0 <= h < attn.shape[0]]
        if bad:
            raise ValueError(f"head index {bad[0]} out of range: the model has {attn.shape[0]} heads")
        attn = attn[list(heads)]
    return attn.mean(dim=0)
