"""Which torch device the engines run on, and what the CPU offers."""

from __future__ import annotations

import torch

from highlighter.errors import DeviceError


def cpu_supports_bf16() -> bool:
    """Whether oneDNN has fast bf16 kernels here (AVX512-BF16 or AMX); otherwise bf16 is emulated and slow."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present. On CUDA the fp32 engines turn TF32 off: cuDNN uses it for the
    patch-embedding convolution by default on Ampere and newer, which would move the maps by ~1e-3.

    A device this machine does not have raises ``DeviceError`` (a ``ValueError``, one line for the CLI)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise DeviceError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {device}: CUDA was requested but no CUDA device is available here "
                              f"(torch {torch.__version__}); use --device cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {device}: there are {torch.cuda.device_count()} CUDA device(s), "
                              f"numbered from 0")
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    elif dev.type != "cpu":
        raise DeviceError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
    return dev
