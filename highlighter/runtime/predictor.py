"""Build any live predictor from a checkpoint: torch fp32 / bf16, ONNX Runtime fp32 / int8, and the
``auto`` choice: the fastest backend whose masks agree with torch fp32 (mean IoU >= 0.98).

A choice takes tens of seconds on a small CPU (an ONNX export, an int8 quantisation, timings), so it is kept on
disk (``remember_choice`` / ``cached_choice``), keyed by what it depends on: the model file's content, the input
size, the machine (GPU name, or CPU model and flags) and the versions of the packages that run it."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import threading
import time
from pathlib import Path

import numpy as np

from highlighter.defaults import IMAGE_SIZE, LIVE_PREPROCESSING, MASS, PHOTO_PREPROCESSING
from highlighter.errors import Cancelled
from highlighter.fileio import atomic_write
from highlighter.runtime.base import Predictor, check_preprocessing
from highlighter.runtime.graphs import cache_dir, file_sha256

BACKENDS = ("torch-fp32", "torch-bf16", "ort-fp32", "ort-int8")
AGREEMENT = 0.98  # mean mask IoU against torch fp32 for a backend to be chosen ...
MAP_AGREEMENT = 0.999  # ... or this mean correlation of its fused maps with fp32's (near-flat maps: see choose_backend)
STALE_FACTOR = 2.0  # a kept choice is measured again when its backend runs this many times slower (or faster) ...
STALE_FRAMES = 20  # ... than the time it was chosen with, as the median of this many frames
CHOICE_VERSION = 3  # bump when the way a choice is made changes: older ones are then ignored (3: graphs normalise)


class TorchPredictor(Predictor):
    """``AttentionViT`` (taking pixels) in eager PyTorch: fp32, or bf16 weights (CPUs with AVX512-BF16/AMX, and
    CUDA). It also gives the patch tokens and keys (``run_tokens``, ``run_features``), for the PCA overlay, the
    patch similarity and tracking; the ONNX graphs give only the attention. ``image_size`` None: any picture, each
    at its own size (the Photos tab, `attention`, `eval`); else one (H, W), as the live graphs."""

    supports_tokens = True
    supports_keys = True

    def __init__(self, ck, image_size: tuple[int, int] | None, precision: str = "fp32", device: str = "auto",
                 model=None, preprocessing: str = LIVE_PREPROCESSING, short: int | None = None):
        """``model``: an ``AttentionViT`` of ``ck`` already built on this device, whose backbone is shared (fp32
        only; a bf16 predictor casts a backbone of its own)."""
        import torch

        from highlighter.core.attention import AttentionViT
        from highlighter.core.build import build_attention_model
        from highlighter.core.device import resolve_device

        check_preprocessing(preprocessing)
        self.torch, self.ck = torch, ck
        self.device = resolve_device(device)
        shared = model is not None and precision == "fp32" and next(model.parameters()).device == self.device
        size = None if image_size is None else tuple(image_size)
        if shared:  # another thread may run the backbone: only this wrapper's own buffers are moved
            self.model = AttentionViT(model.vit, ck.vit, size, pixels=True)
            self.model.training = False
            for name, buf in self.model._buffers.items():
                self.model._buffers[name] = buf.to(self.device)
        else:
            self.model = AttentionViT(build_attention_model(ck).vit, ck.vit, size, pixels=True).eval().to(self.device)
        self.dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        if precision == "bf16":
            self.model = self.model.to(torch.bfloat16)
        self.image_size, self.patch_size, self.num_heads = size, ck.vit.patch_size, ck.vit.num_heads
        self.preprocessing, self.short = preprocessing, short or IMAGE_SIZE
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

    def run_features(self, blob: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(blob).to(self.device, self.dtype, non_blocking=True)
            got, keys = [], []
            attn = self.model(x, tokens=got, keys=keys)[0]
            return attn.float().cpu().numpy(), got[0][0].float().cpu().numpy(), keys[0][0].float().cpu().numpy()


def fingerprint(ck, image_size: tuple[int, int]) -> str:
    """Names the exported graph: the file (path, size, time) or the random spec, the architecture, the size."""
    parts = [ck.source, repr(ck.vit), repr(tuple(image_size)), "v3"]
    if ck.path:
        st = Path(ck.path).stat()
        parts += [str(Path(ck.path).resolve()), str(st.st_size), str(st.st_mtime_ns)]
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


def onnx_for(ck, image_size: tuple[int, int], int8: bool = False, log=print) -> Path:
    """The exported graph for this checkpoint and size, made once and cached (atomically)."""
    from highlighter.core.build import build_attention_model
    from highlighter.runtime.export import export_onnx, live_model, quantize_int8

    H, W = image_size
    stem = f"{fingerprint(ck, image_size)}_{H}x{W}"
    fp32 = cache_dir() / f"{stem}.onnx"
    if not fp32.exists():
        log(f"exporting {ck.vit.arch_name} at {H}x{W} to ONNX (once; cached in {fp32.parent})")
        export_onnx(live_model(build_attention_model(ck).vit, ck.vit, image_size), fp32)
    if file_unchanged(ck):  # the app's next start can stream on it before torch is imported
        from highlighter.runtime.graphs import record

        try:
            record(ck.path, fp32, image_size, ck.vit.patch_size, ck.vit.num_heads)
        except OSError as e:  # a read-only cache: the graph still works, only the next start is not quick
            log(f"note: could not record the graph for quick starts ({e})")
    if not int8:
        return fp32
    q = cache_dir() / f"{stem}_int8.onnx"
    if not q.exists():
        log("quantising to int8 (once)")
        tmp = q.with_suffix(".partial.onnx")
        quantize_int8(fp32, tmp)
        tmp.replace(q)
    return q


def file_unchanged(ck) -> bool:
    """Whether ``ck`` came from a file that is still as it was read (a run still training rewrites its
    checkpoint): only then may what is learnt about the loaded weights be kept under the file's content."""
    if not ck.path or getattr(ck, "file_stat", None) is None:
        return False
    try:
        st = Path(ck.path).stat()
    except OSError:
        return False
    return (st.st_size, st.st_mtime_ns) == tuple(ck.file_stat)


def make_predictor(backend: str, ck, image_size: tuple[int, int], device: str = "auto", log=print,
                   preprocessing: str = LIVE_PREPROCESSING) -> Predictor:
    from highlighter.runtime.ort import OrtPredictor

    check_preprocessing(preprocessing)  # before an export
    if backend in ("torch-fp32", "torch-bf16"):
        return TorchPredictor(ck, image_size, backend[6:], device, preprocessing=preprocessing)
    if backend == "ort-fp32":
        return OrtPredictor(onnx_for(ck, image_size, log=log), ck.vit.patch_size, "ort-fp32", device=device,
                            preprocessing=preprocessing)
    if backend == "ort-int8":
        return OrtPredictor(onnx_for(ck, image_size, int8=True, log=log), ck.vit.patch_size, "ort-int8", device="cpu",
                            preprocessing=preprocessing)
    raise ValueError(f"unknown backend {backend!r}; choose from auto, {', '.join(BACKENDS)}")


def photo_predictor(ck, device: str = "auto", short: int | None = None, preprocessing: str = PHOTO_PREPROCESSING,
                    model=None) -> TorchPredictor:
    """The predictor of the Photos tab, `attention` and `eval`: torch fp32, each picture at its own size (its
    shorter side at ``short``, default IMAGE_SIZE), visualize_attention.py's resize by default."""
    return TorchPredictor(ck, None, "fp32", device, model=model, preprocessing=preprocessing, short=short)


def bf16_usable(device: str = "auto") -> bool:
    import torch

    from highlighter.core.device import cpu_supports_bf16

    if device != "cpu" and torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_supports_bf16()


def choose_backend(ck, image_size, frames: list[np.ndarray], device: str = "auto", threshold: float = MASS,
                   repeats: int = 5, log=print, cancel: threading.Event | None = None,
                   preprocessing: str = LIVE_PREPROCESSING) -> tuple[Predictor, dict]:
    """Try each backend on the frames: keep those that agree with torch fp32, and return the fastest (median
    model time), with the table of what was measured. ``cancel`` set: raises Cancelled before the next backend.
    Every backend gets the frames through the same ``preprocessing``, and the one returned keeps it.

    A backend agrees when its masks (the fused map under DINO's rule, as the live overlay shows them) match
    fp32's at a mean IoU >= AGREEMENT, or when its fused maps correlate with fp32's at >= MAP_AGREEMENT: on a
    model with near-flat maps (an early or weak one) many patches hold nearly the same attention, so rounding
    differences far below anything visible move the mass rule's boundary, and every fast backend's masks
    "disagree" although its maps are the same; then torch fp32 was chosen however slow it was. The report
    gives both figures (``mean_iou``, ``map_r``) and which one let the backend in (``agrees``)."""
    from highlighter.evaluation import iou
    from highlighter.postprocess import fuse, mass_mask

    def maps(pred, f):
        fused = fuse(pred(f).attention)
        return fused, mass_mask(fused, threshold)

    reference = make_predictor("torch-fp32", ck, image_size, device, log, preprocessing)
    ref_out = [maps(reference, f) for f in frames]
    candidates = ["torch-fp32", "ort-fp32", "ort-int8"] + (["torch-bf16"] if bf16_usable(device) else [])
    report, best = {}, None
    for name in candidates:
        if cancel is not None and cancel.is_set():
            raise Cancelled("the backend choice was cancelled")
        try:
            pred = reference if name == "torch-fp32" else make_predictor(name, ck, image_size, device, log,
                                                                          preprocessing)
        except Exception as e:  # noqa: BLE001 - a backend that cannot start is simply not chosen
            report[name] = {"error": f"{type(e).__name__}: {e}"[:200]}
            continue
        out = [maps(pred, f) for f in frames]
        ious = [iou(m, rm) for (_, m), (_, rm) in zip(out, ref_out)]
        corr = [map_correlation(a, ra) for (a, _), (ra, _) in zip(out, ref_out)]
        times = []
        for _ in range(repeats):
            for f in frames[:2]:
                t = time.perf_counter()
                pred(f)
                times.append((time.perf_counter() - t) * 1e3)
        mean_iou, map_r = float(np.mean(ious)), float(np.mean(corr))
        agrees = "masks" if mean_iou >= AGREEMENT else "maps" if map_r >= MAP_AGREEMENT else ""
        report[name] = {"mean_iou": mean_iou, "map_r": map_r, "agrees": agrees, "ms": float(np.median(times)),
                        "name": pred.name}
        if agrees and (best is None or report[name]["ms"] < report[best[0]]["ms"]):
            best = (name, pred)
    assert best is not None  # torch fp32 agrees with itself
    report["chosen"] = best[0]
    return best[1], report


def map_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two maps (1.0 for two equal constant maps, 0.0 for a constant and a varying one)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 1.0 if na == nb else 0.0
    return float(a @ b / (na * nb))


# ============================================================================= the choice, kept on disk
def machine_id(device: str = "auto") -> str:
    """The GPU's name when it runs on one, else the CPU's model and instruction-set flags (what decides whether
    int8, bf16 or ONNX Runtime win)."""
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return "cuda:" + torch.cuda.get_device_name(0)
    model, flags = platform.processor() or platform.machine(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not flags:
                model = value.strip()
            if key.strip() in ("flags", "Features"):
                flags = " ".join(sorted(value.split()))
                break
    except OSError:  # not Linux: the model name is what there is
        pass
    return f"cpu:{model}|{hashlib.sha1(flags.encode()).hexdigest()[:12]}|{os.cpu_count()}"


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    from highlighter import __version__

    out = {"highlighter": __version__}
    for name in ("torch", "onnxruntime", "onnx", "timm", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "-"
    return out


def choice_key(ck, image_size: tuple[int, int], device: str = "auto", threshold: float = MASS) -> str:
    """What a backend choice depends on, hashed: the model's content, the size, the machine, the versions."""
    model = file_sha256(ck.path) if ck.path else ck.source  # random:... models are named by their spec
    parts = {"model": model, "vit": repr(ck.vit), "size": list(image_size), "machine": machine_id(device),
             "versions": _versions(), "threshold": threshold, "v": CHOICE_VERSION}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def _choice_path(key: str) -> Path:
    return cache_dir() / "choices" / f"{key}.json"


def cached_choice(ck, image_size: tuple[int, int], device: str = "auto", threshold: float = MASS) -> dict | None:
    """The report of an earlier choice for this model, size, machine and versions, or None."""
    try:
        report = json.loads(_choice_path(choice_key(ck, image_size, device, threshold)).read_text())
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) and report.get("chosen") in BACKENDS else None


def remember_choice(ck, image_size: tuple[int, int], report: dict, device: str = "auto",
                    threshold: float = MASS) -> Path | None:
    """Keep a choice's report (written atomically: a half-written file is never read back) and return its path;
    None, keeping nothing, for a file rewritten since it was loaded (the report would be the old weights' under
    the new content's name)."""
    path = _choice_path(choice_key(ck, image_size, device, threshold))
    if ck.path and not file_unchanged(ck):
        return None
    report = {**report, "measured_at": report.get("measured_at", time.time())}
    text = json.dumps(report, indent=1)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return path


def auto_predictor(ck, image_size: tuple[int, int], frames, device: str = "auto", threshold: float = MASS,
                   repeats: int = 5, log=print, cancel: threading.Event | None = None,
                   preprocessing: str = LIVE_PREPROCESSING) -> tuple[Predictor, dict, bool]:
    """``--backend auto`` with memory: (predictor, report, whether the report was read from disk). An earlier
    choice for this model content, size, machine and versions is reused; else the backends are measured on
    ``frames()`` (a callable: frames are only read when a choice must be made) and the choice is kept. The
    backends are compared on the same blobs whatever the ``preprocessing`` (it is the same function for all of
    them); the predictor returned uses it."""
    check_preprocessing(preprocessing)  # before a measurement
    report = cached_choice(ck, image_size, device, threshold)
    if report is not None:
        return (make_predictor(report["chosen"], ck, image_size, device, log=log, preprocessing=preprocessing),
                report, True)
    predictor, report = choose_backend(ck, image_size, frames(), device=device, threshold=threshold, repeats=repeats,
                                       log=log, cancel=cancel, preprocessing=preprocessing)
    kept = remember_choice(ck, image_size, report, device, threshold) is not None
    return predictor, {**report, "kept": kept}, False



def forget_choice(ck, image_size: tuple[int, int], device: str = "auto", threshold: float = MASS) -> None:
    """Drop the kept choice for this model, size and machine: the next ``auto_predictor`` measures again."""
    _choice_path(choice_key(ck, image_size, device, threshold)).unlink(missing_ok=True)


def choice_age(report: dict, now: float | None = None) -> str:
    """How old a kept choice is, in words ("3 min", "2 h", "5 days"); "of unknown age" for a report written
    before choices carried their time."""
    t = report.get("measured_at")
    if not isinstance(t, (int, float)):
        return "of unknown age"
    age = max(0.0, (time.time() if now is None else now) - t)
    if age < 90:
        return f"{age:.0f} s old"
    if age < 90 * 60:
        return f"{age / 60:.0f} min old"
    if age < 36 * 3600:
        return f"{age / 3600:.0f} h old"
    return f"{age / 86400:.0f} days old"


class ChoiceWatch:
    """Watches the model times of a backend that a kept choice picked. A choice is measured once, and a measure
    taken under load (another program on the cores, a training run) can pick a backend that is not the fastest
    when the machine is free: then the kept backend's time on the stream is far from the time it was chosen
    with. ``add(call_ms)`` (a frame's preprocessing and model time, what ``choose_backend`` timed) returns, once,
    a line saying so when the median of ``frames`` frames is more than ``factor`` times slower or faster than the
    recorded time; the caller measures again."""

    def __init__(self, report: dict, factor: float = STALE_FACTOR, frames: int = STALE_FRAMES):
        entry = report.get(report.get("chosen", ""), {})
        self.name, self.recorded = report.get("chosen", "?"), entry.get("ms") if isinstance(entry, dict) else None
        self.factor, self.frames, self.times, self.done = factor, frames, [], self.recorded is None

    def add(self, call_ms: float) -> str | None:
        if self.done:
            return None
        self.times.append(float(call_ms))
        if len(self.times) < self.frames:
            return None
        self.done = True
        now = float(np.median(self.times))
        ratio = now / max(self.recorded, 1e-6)
        if 1 / self.factor <= ratio <= self.factor:
            return None
        how = "slower" if ratio > 1 else "faster"
        return (f"{self.name} runs at {now:.1f} ms a frame, {max(ratio, 1 / ratio):.1f}x {how} than the "
                f"{self.recorded:.1f} ms it was chosen with: measuring the backends again")
