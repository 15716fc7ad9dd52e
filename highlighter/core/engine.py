"""Kept so that existing imports work; the engines live in ``core.inference``, the device helpers in
``core.device``."""

from highlighter.core.device import cpu_supports_bf16, resolve_device
from highlighter.core.inference import AttentionEngine, AttentionResult, MAEEngine, MAEResult

__all__ = ["AttentionEngine", "AttentionResult", "MAEEngine", "MAEResult", "cpu_supports_bf16", "resolve_device"]
