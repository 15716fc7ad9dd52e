"""Kept so that existing imports work: TokenCut lives in ``highlighter.postprocess`` (numpy, torch-free)."""

from highlighter.postprocess import border_ring, tokencut_mask

__all__ = ["border_ring", "tokencut_mask"]
