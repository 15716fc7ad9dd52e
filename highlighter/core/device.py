"""Which torch device the engines run on, and what the CPU offers."""

from __future__ import annotations

import torch


def cpu_supports_bf16() -> bool:
    """Whether oneDNN has fast bf16 kernels here (AVX512-BF16 or AMX); otherwise bf16 is emulated and slow."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present. On CUDA the fp32 engines turn TF32 off: cuDNN uses it for the
    patch-embedding convolution by default on Ampere and newer, which would move the maps by ~1e-3."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("CUDA was requested but no CUDA device is available")
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    try:
        return torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
