"""A torch face for callers that hold tensors; the rules themselves live once, in ``highlighter.postprocess``
(numpy). New code should call ``highlighter.postprocess`` with arrays."""

from __future__ import annotations

import torch

from highlighter import postprocess
from highlighter.postprocess import DEFAULT_THRESHOLDS, MASK_RULES

__all__ = ["DEFAULT_THRESHOLDS", "MASK_RULES", "threshold_maps"]


def threshold_maps(maps: torch.Tensor, rule: str = "mass", threshold: float | None = None) -> torch.Tensor:
    """``postprocess.threshold_maps`` for a tensor (..., h, w): uint8 tensor on the CPU, 1 = foreground."""
    return torch.from_numpy(postprocess.threshold_maps(maps.detach().float().cpu().numpy(), rule, threshold))
