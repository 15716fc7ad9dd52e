"""Start-up: the real app launched twice as a new user would (`highlighter gui --quit-after N`, offscreen Qt), with a
fresh cache folder and fresh settings. The first start has no backend choice on disk (it streams on torch fp32 and
chooses in the background, then saves the choice); the second start reads the choice back.

Each run reports, from the app's own JSON line: seconds from launch to the first overlaid frame, the frame rate
over the N frames, the backend in use at frame N and where the choice came from; plus the process's wall time
(the first start exits only once its choice is saved), and, as the floor, how long importing torch, timm, cv2 and
PySide6 alone takes on the machine at that moment. Prints a table and writes JSON.

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
        t0 = time.monotonic()  # the floor: what importing the libraries alone takes on this machine now
        subprocess.run([sys.executable, "-c", "import torch, timm, cv2, PySide6.QtWidgets"], env=env, check=True)
        imports = round(time.monotonic() - t0, 2)
        runs = {"first": launch(args, env), "second": launch(args, env)}
        load_after = os.getloadavg()[0]
    out = {"machine": f"{cpu_name()}, {os.cpu_count()} cores", "load_avg_1min_before": round(load_before, 2),
           "load_avg_1min_after": round(load_after, 2), "imports_s": imports, "frames": args.frames,
           "checkpoint": args.checkpoint or "shipped default", "runs": runs}
    print(f"{'start':8} {'window s':>9} {'first frame s':>13} {'fps':>6} {'backend':>12} {'choice':>9} "
          f"{'process s':>10}")
    for name, r in runs.items():
        print(f"{name:8} {r['window_s']:9.2f} {r['first_frame_s']:13.2f} {r['fps']:6.2f} {r['backend']:>12} "
              f"{r['choice']:>9} {r['process_s']:10.1f}")
    print(f"importing torch, timm, cv2 and PySide6 alone: {imports:.2f} s")
    print(f"machine: {out['machine']}; 1-min load average before / after: {out['load_avg_1min_before']} / "
          f"{out['load_avg_1min_after']}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
