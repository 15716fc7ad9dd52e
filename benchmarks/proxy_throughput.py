"""What limits DINO training on a small CPU: the 64/32-px ViT-Ti/8 recipe alone, and two runs sharing the cores.

Each case starts real `highlighter train dino` processes (workers, PIL augmentation, the full recipe) on
shared/data/train/tinyimagenet/train for a fixed number of steps and reads the step times from their logs.
Cases: 6 or 8 local crops; one run or two at once; 2 compute threads or 1 (OMP_NUM_THREADS); data workers
under SCHED_IDLE (the default) or at normal priority. It prints a table (median img/s per run, and the sum
over the runs at once) and writes JSON.

    .venv/bin/python benchmarks/proxy_throughput.py [--steps N] [--json FILE]

Pause any training before running it: the figures are only comparable on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "train" / "tinyimagenet" / "train"
RECIPE = ["--preset", "small-data", "--arch", "vit_tiny", "--patch-size", "8", "--global-crop-size", "64",
          "--local-crop-size", "32", "--batch-size", "64", "--epochs", "2", "--warmup-epochs", "1",
          "--warmup-teacher-temp-epochs", "1", "--preview-every", "0", "--log-every", "1"]
# name, local crops, runs at once, threads per run, worker scheduling
CASES = [
    ("6 local, alone, 2 threads", 6, 1, 2, "idle"),
    ("8 local, alone, 2 threads", 8, 1, 2, "idle"),
    ("8 local, alone, 1 thread", 8, 1, 1, "idle"),
    ("8 local, two at once, 2 threads each, idle workers", 8, 2, 2, "idle"),
    ("8 local, two at once, 2 threads each, normal workers", 8, 2, 2, "normal"),
    ("8 local, two at once, 1 thread each, normal workers", 8, 2, 1, "normal"),
]


def matmul_gflops() -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    for _ in range(2):
        a @ b
    t = time.perf_counter()
    for _ in range(5):
        a @ b
    return 2 * 2048**3 * 5 / (time.perf_counter() - t) / 1e9


def run_case(local: int, runs: int, threads: int, sched: str, steps: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HIGHLIGHTER_WORKER_SCHED": sched}
        procs = [subprocess.Popen([sys.executable, "-m", "highlighter", "train", "dino", "--data", str(DATA),
                                   "--out", f"{tmp}/run{i}", *RECIPE, "--local-crops-number", str(local),
                                   "--max-steps", str(steps)], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for i in range(runs)]
        for p in procs:
            p.wait()
        rates = []
        for i in range(runs):
            times = [json.loads(line)["time"] for line in Path(f"{tmp}/run{i}/log.jsonl").read_text().splitlines()
                     if json.loads(line)["event"] == "step"]
            dts = [b - a for a, b in zip(times, times[1:])][2:]
            rates.append(64 / statistics.median(dts))
        return rates


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "proxy_throughput.json"))
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"missing {DATA}", file=sys.stderr)
        return 1
    gflops = matmul_gflops()
    print(f"2048^2 fp32 matmul, {torch.get_num_threads()} threads: {gflops:.0f} GFLOP/s")
    rows = []
    for name, local, runs, threads, sched in CASES:
        rates = run_case(local, runs, threads, sched, args.steps)
        rows.append({"case": name, "local_crops": local, "runs": runs, "threads": threads, "workers": sched,
                     "img_s_per_run": [round(r, 1) for r in rates], "img_s_total": round(sum(rates), 1)})
        print(f"{name:55s} per run {', '.join(f'{r:.1f}' for r in rates):>12s}   total {sum(rates):5.1f} img/s",
              flush=True)
    print("\n| case | img/s per run | img/s total |\n|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {', '.join(map(str, r['img_s_per_run']))} | {r['img_s_total']} |")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                                           "torch": torch.__version__, "matmul_gflops": round(gflops)},
                               "rows": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
