"""Build any live predictor from a checkpoint: torch fp32 / bf16, ONNX Runtime fp32 / int8, and the
``auto`` choice: the fastest backend whose masks agree with torch fp32 (mean IoU >= 0.98)."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np

from highlighter.runtime.base import Predictor

BACKENDS = ("torch-fp32", "torch-bf16", "ort-fp32", "ort-int8")
AGREEMENT = 0.98


class TorchPredictor(Predictor):
    """``LiveModel`` in eager PyTorch: fp32, or bf16 weights (CPUs with AVX512-BF16/AMX, and CUDA). It also
    gives the patch tokens (``run_tokens``), for the PCA overlay; the ONNX graphs give only the attention."""

    supports_tokens = True

    def __init__(self, ck, image_size: tuple[int, int], precision: str = "fp32", device: str = "auto"):
        import torch

        from highlighter.core.build import build_attention_model
        from highlighter.core.device import resolve_device
        from highlighter.runtime.export import LiveModel

        self.torch = torch
        self.device = resolve_device(device)
        model = build_attention_model(ck)
        self.model = LiveModel(model.vit, ck.vit, image_size).eval().to(self.device)
        self.dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        if precision == "bf16":
            self.model = self.model.to(torch.bfloat16)
        self.image_size, self.patch_size, self.num_heads = tuple(image_size), ck.vit.patch_size, ck.vit.num_heads
        self.name = f"torch-{precision}" + ("-cuda" if self.device.type == "cuda" else "")

    def run(self, blob: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(blob).to(self.device, self.dtype, non_blocking=True)
            return self.model(x)[0].float().cpu().numpy()

    def run_tokens(self, blob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(blob).to(self.device, self.dtype, non_blocking=True)
            got: list = []
            attn = self.model(x, tokens=got)[0]
            return attn.float().cpu().numpy(), got[0][0].float().cpu().numpy()


def cache_dir() -> Path:
    base = os.environ.get("HIGHLIGHTER_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return Path(base) / "highlighter" if not os.environ.get("HIGHLIGHTER_CACHE") else Path(base)


def fingerprint(ck, image_size: tuple[int, int]) -> str:
    """Names the exported graph: the file (path, size, time) or the random spec, the architecture, the size."""
    parts = [ck.source, repr(ck.vit), repr(tuple(image_size)), "v2"]
    if ck.path:
        st = Path(ck.path).stat()
        parts += [str(Path(ck.path).resolve()), str(st.st_size), str(st.st_mtime_ns)]
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


def onnx_for(ck, image_size: tuple[int, int], int8: bool = False, log=print) -> Path:
    """The exported graph for this checkpoint and size, made once and cached (atomically)."""
    from highlighter.core.build import build_attention_model
    from highlighter.runtime.export import LiveModel, export_onnx, quantize_int8

    H, W = image_size
    stem = f"{fingerprint(ck, image_size)}_{H}x{W}"
    fp32 = cache_dir() / f"{stem}.onnx"
    if not fp32.exists():
        log(f"exporting {ck.vit.arch_name} at {H}x{W} to ONNX (once; cached in {fp32.parent})")
        export_onnx(LiveModel(build_attention_model(ck).vit, ck.vit, image_size), fp32)
    if not int8:
        return fp32
    q = cache_dir() / f"{stem}_int8.onnx"
    if not q.exists():
        log("quantising to int8 (once)")
        tmp = q.with_suffix(".partial.onnx")
        quantize_int8(fp32, tmp)
        tmp.replace(q)
    return q


def make_predictor(backend: str, ck, image_size: tuple[int, int], device: str = "auto", log=print) -> Predictor:
    from highlighter.runtime.ort import OrtPredictor

    if backend == "torch-fp32":
        return TorchPredictor(ck, image_size, "fp32", device)
    if backend == "torch-bf16":
        return TorchPredictor(ck, image_size, "bf16", device)
    if backend == "ort-fp32":
        return OrtPredictor(onnx_for(ck, image_size, log=log), ck.vit.patch_size, "ort-fp32", device=device)
    if backend == "ort-int8":
        return OrtPredictor(onnx_for(ck, image_size, int8=True, log=log), ck.vit.patch_size, "ort-int8", device="cpu")
    raise ValueError(f"unknown backend {backend!r}; choose from auto, {', '.join(BACKENDS)}")


def bf16_usable(device: str = "auto") -> bool:
    import torch

    from highlighter.core.device import cpu_supports_bf16

    if device != "cpu" and torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_supports_bf16()


def choose_backend(ck, image_size, frames: list[np.ndarray], device: str = "auto", threshold: float = 0.6,
                   repeats: int = 5, log=print) -> tuple[Predictor, dict]:
    """Try each backend on the frames: keep those whose masks (the fused map under DINO's rule, as the live
    overlay shows them) agree with torch fp32 at a mean IoU >= 0.98, and return the fastest (median model
    time), with the table of what was measured."""
    from highlighter.evaluation import iou
    from highlighter.postprocess import fuse, mass_mask

    def masks(pred, f):
        return mass_mask(fuse(pred(f).attention), threshold)

    reference = make_predictor("torch-fp32", ck, image_size, device, log)
    ref_masks = [masks(reference, f) for f in frames]
    candidates = ["torch-fp32", "ort-fp32", "ort-int8"] + (["torch-bf16"] if bf16_usable(device) else [])
    report, best = {}, None
    for name in candidates:
        try:
            pred = reference if name == "torch-fp32" else make_predictor(name, ck, image_size, device, log)
        except Exception as e:  # noqa: BLE001 - a backend that cannot start is simply not chosen
            report[name] = {"error": f"{type(e).__name__}: {e}"[:200]}
            continue
        ious = [iou(masks(pred, f), m) for f, m in zip(frames, ref_masks)]
        times = []
        for _ in range(repeats):
            for f in frames[:2]:
                t = time.perf_counter()
                pred(f)
                times.append((time.perf_counter() - t) * 1e3)
        report[name] = {"mean_iou": float(np.mean(ious)), "ms": float(np.median(times)), "name": pred.name}
        if report[name]["mean_iou"] >= AGREEMENT and (best is None or report[name]["ms"] < report[best[0]]["ms"]):
            best = (name, pred)
    assert best is not None  # torch fp32 agrees with itself
    report["chosen"] = best[0]
    return best[1], report
