"""The Python half of scripts/train_on_gpu.sh: what is carried, how long to train, and the one report brought back.

    versions DEVICE                      the machine and every version that matters, as JSON (printed first)
    pack-extras DEST HORSES DAVIS CLIP   DEST/probe/<set>/{images,masks} (every photo, <= 256 px) and DEST/frames/
    size DIR                             what travels: DIR and the tracked files, against the 64 MiB limit
    plan TIMING_LOG END                  "EPOCHS MINUTES": the run that fits before END (a time.time()) at the
                                         throughput the timing run measured
    run-check NAME RUNDIR ERRFILE        a check run's result (steps, losses, precision, process group) as JSON
    collect WORK OUT                     every JSON of WORK into one report

Needs only the standard library, numpy, OpenCV and Pillow (the GPU machine has no PySide6 and no registry).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

LIMIT = 64 * 2**20


def versions(device: str) -> dict:
    out = {"python": sys.version.split()[0], "platform": platform.platform(), "device": device,
           "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    for name in ("torch", "torchvision", "timm", "numpy", "onnxruntime", "cv2", "PIL", "safetensors", "tqdm",
                 "huggingface_hub"):
        try:
            mod = __import__(name)
            out[name] = getattr(mod, "__version__", "?")
            if name == "timm":
                out["timm_from"] = str(Path(mod.__file__).parent)
        except Exception as e:  # noqa: BLE001 - a missing package is a finding, not a failure
            out[name] = f"missing ({type(e).__name__})"
    try:
        import torch

        out["cuda"] = torch.version.cuda
        out["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            out["gpu"] = torch.cuda.get_device_name(0)
            out["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
            out["bf16"] = torch.cuda.is_bf16_supported()
        out["cpu_threads"] = torch.get_num_threads()
    except Exception as e:  # noqa: BLE001
        out["torch_error"] = str(e)[:200]
    try:
        import onnxruntime

        out["ort_providers"] = onnxruntime.get_available_providers()
    except Exception:  # noqa: BLE001
        pass
    return out


def pack_extras(dest: Path, horses: Path, davis: Path, clip: Path, side: int = 256, frames: int = 60) -> None:
    import cv2
    from PIL import Image

    for folder in (horses, davis):
        n = 0
        for img_path in sorted((folder / "images").iterdir()):
            mask_path = folder / "masks" / f"{img_path.stem}.png"
            if not mask_path.exists():
                continue
            img = Image.open(img_path).convert("RGB")
            mask = Image.open(mask_path).convert("L")
            scale = min(1.0, side / max(img.size))
            size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
            for sub, pic, resample, ext in (("images", img, Image.BICUBIC, ".jpg"),
                                            ("masks", mask, Image.NEAREST, ".png")):
                out = dest / "probe" / folder.name / sub / f"{img_path.stem}{ext}"
                out.parent.mkdir(parents=True, exist_ok=True)
                pic.resize(size, resample).save(out, **({"quality": 90} if ext == ".jpg" else {}))
            n += 1
        print(f"{dest / 'probe' / folder.name}: {n} photos with masks, <= {side} px")
    cap = cv2.VideoCapture(str(clip))
    (dest / "frames").mkdir(parents=True, exist_ok=True)
    k = 0
    while k < frames:
        ok, frame = cap.read()
        if not ok:
            break
        cv2.imwrite(str(dest / "frames" / f"{k:04d}.jpg"), frame)
        k += 1
    if k == 0:
        raise SystemExit(f"error: no frame could be read from {clip}")
    print(f"{dest / 'frames'}: {k} frames of {clip}")


def _tree_bytes() -> int:
    try:
        names = subprocess.run(["git", "ls-files", "-z"], capture_output=True, check=True).stdout.split(b"\0")
    except (OSError, subprocess.CalledProcessError):
        return 0
    return sum(os.path.getsize(n) for n in names if n and os.path.isfile(n))


def size(folder: Path) -> int:
    carried = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    tracked = _tree_bytes()
    total = carried + tracked
    print(f"{folder}: {carried / 2**20:.1f} MiB; tracked files {tracked / 2**20:.1f} MiB; together "
          f"{total / 2**20:.1f} MiB of the {LIMIT / 2**20:.0f} MiB that travel")
    if total > LIMIT - 2 * 2**20:
        print("too large to carry: run `scripts/train_on_gpu.sh lean` (a branch without docs/ and the large "
              "models), or lower MAX_SIDE / QUALITY", file=sys.stderr)
        return 1
    return 0


def _events(log: Path) -> list[dict]:
    out = []
    for line in log.read_text().splitlines() if log.exists() else []:
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def plan(timing_log: Path, end: float, margin: float = 0.85) -> str:
    """Epochs of the photos that fit in the time left at the measured rate (median of the logged steps after the
    first), and the minutes left (the run's --max-minutes)."""
    ev = _events(timing_log)
    start = next((e for e in ev if e["event"] == "start"), None)
    if start is None:
        raise SystemExit(f"error: the timing run left no log ({timing_log})")
    rates = [e["img_s"] for e in ev if e["event"] == "step" and e["step"] > 0] or \
        [e["img_s"] for e in ev if e["event"] == "step"]
    if not rates:
        raise SystemExit("error: the timing run made no step")
    rate = sorted(rates)[len(rates) // 2]
    left_s = end - time.time()
    startup_s = 30.0 if "cuda" in start.get("device", "") else 5.0  # the photos decoded onto the device again
    epochs = max(1, int(rate * max(left_s - startup_s, 10) * margin / start["images"]))
    print(f"{rate:.0f} img/s: {epochs} epochs of {start['images']} photos fit in {left_s / 60:.1f} minutes "
          f"({epochs * start['images']:,} images)", file=sys.stderr)
    return f"{epochs} {max(left_s - startup_s, 10) / 60:.2f}"


def run_check(name: str, run_dir: Path, err: Path) -> dict:
    ev = _events(run_dir / "log.jsonl")
    start = next((e for e in ev if e["event"] == "start"), {})
    steps = [e for e in ev if e["event"] == "step"]
    losses = [e["loss"] for e in steps]
    out = {"check": name, "ok": bool(steps) and all(v == v and abs(v) < 1e9 for v in losses),
           "steps": len(steps), "last_step": steps[-1]["step"] if steps else None, "losses": losses[:25],
           "img_s": [e.get("img_s") for e in steps][-5:], "device": start.get("device"),
           "precision": start.get("precision"), "world_size": start.get("world_size"),
           "distributed": start.get("distributed"), "ended": ev[-1]["event"] if ev else None}
    if err.exists() and not out["ok"]:
        out["stderr_tail"] = err.read_text()[-1500:]
    return out


def collect(work: Path, out: Path) -> None:
    report: dict = {}
    for p in sorted(work.glob("*.json")):
        try:
            report[p.stem] = json.loads(p.read_text())
        except ValueError as e:
            report[p.stem] = {"unreadable": str(e)}
    for err in sorted(work.glob("bench_*.err")):
        if err.stem not in report and err.stat().st_size:
            report[err.stem] = {"failed": err.read_text()[-1500:]}
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, out)


def main(argv: list[str]) -> int:
    cmd, *rest = argv
    if cmd == "versions":
        print(json.dumps(versions(rest[0]), indent=1))
    elif cmd == "pack-extras":
        pack_extras(Path(rest[0]), Path(rest[1]), Path(rest[2]), Path(rest[3]))
    elif cmd == "size":
        return size(Path(rest[0]))
    elif cmd == "plan":
        print(plan(Path(rest[0]), float(rest[1])))
    elif cmd == "run-check":
        print(json.dumps(run_check(rest[0], Path(rest[1]), Path(rest[2])), indent=1))
    elif cmd == "collect":
        collect(Path(rest[0]), Path(rest[1]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
