"""Start-up: the real app launched twice as a new user would (`highlighter gui --quit-after N`, offscreen Qt), with a
fresh cache folder and fresh settings. Both starts stream at once on the model's exported ONNX graph (the first on
the graph shipped in models/, the second on the cache's), before torch is imported, while the model loads in the
background; the first start has no backend choice on disk (it measures one once the model is loaded, then saves it),
the second reads it back and switches to it.

Each run reports, from the app's own JSON line: seconds from launch to the window and to the first overlaid frame,
the backend of the first frame and whether torch was imported by then, the frame rate over the N frames (the model
loads meanwhile), the backend in use at frame N and where the choice came from; plus the process's wall time (a
start exits only once the model is loaded and its choice saved). As floors: how long importing what the first frame
needs (PySide6, cv2, onnxruntime) takes, and torch, timm, cv2 and PySide6 (what a start without a graph needs).
Prints a table and writes JSON.

    .venv/bin/python benchmarks/startup.py [--frames 20] [--checkpoint PATH] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def launch(args, env: dict) -> dict:
    cmd = [sys.executable, "-m", "highlighter", "gui", "--quit-after", str(args.frames)]
    if args.checkpoint:
        cmd += ["--checkpoint", args.checkpoint]
    if args.source:
        cmd += ["--source", args.source]
    t0 = time.monotonic()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    wall = time.monotonic() - t0
    lines = [x for x in r.stdout.splitlines() if x.startswith("{")]
    if r.returncode != 0 or not lines:
        raise SystemExit(f"the app failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
    return {**json.loads(lines[-1]), "process_s": round(wall, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=20, help="overlaid frames per start (--quit-after)")
    ap.add_argument("--checkpoint", help="default: the shipped model")
    ap.add_argument("--source", help="default: the bundled clip (no camera)")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "startup.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="highlighter-startup-") as tmp:
        env = {**os.environ, "HIGHLIGHTER_CACHE": str(Path(tmp) / "cache"), "HIGHLIGHTER_SETTINGS":
               str(Path(tmp) / "settings.ini"), "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen"),
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        load_before = os.getloadavg()[0]
        imports = {}
        for name, modules in (("graph", "PySide6.QtWidgets, cv2, onnxruntime"),
                              ("torch", "torch, timm, cv2, PySide6.QtWidgets")):
            t0 = time.monotonic()  # a floor: what importing the libraries alone takes on this machine now
            subprocess.run([sys.executable, "-c", f"import {modules}"], env=env, check=True)
            imports[name] = round(time.monotonic() - t0, 2)
        runs = {"first": launch(args, env), "second": launch(args, env)}
        load_after = os.getloadavg()[0]
    out = {"machine": f"{cpu_name()}, {os.cpu_count()} cores", "load_avg_1min_before": round(load_before, 2),
           "load_avg_1min_after": round(load_after, 2), "imports_s": imports, "frames": args.frames,
           "checkpoint": args.checkpoint or "shipped default", "runs": runs}
    print(f"{'start':8} {'window s':>9} {'first frame s':>13} {'on':>9} {'torch?':>6} {'fps':>6} "
          f"{'backend at N':>12} {'choice':>9} {'process s':>10}")
    for name, r in runs.items():
        print(f"{name:8} {r['window_s']:9.2f} {r['first_frame_s']:13.2f} {r['first_backend']:>9} "
              f"{'yes' if r['torch_at_first_frame'] else 'no':>6} {r['fps']:6.2f} {r['backend']:>12} "
              f"{r['choice']:>9} {r['process_s']:10.1f}")
    print(f"importing PySide6, cv2 and onnxruntime alone: {imports['graph']:.2f} s; torch, timm, cv2 and PySide6: "
          f"{imports['torch']:.2f} s")
    print(f"machine: {out['machine']}; 1-min load average before / after: {out['load_avg_1min_before']} / "
          f"{out['load_avg_1min_after']}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
