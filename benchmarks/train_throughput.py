"""Training throughput (img/s) of the full DINO and MAE recipes, data loading and augmentation included.

Each configuration runs the real training loop (`highlighter.train.pretrain.run`: worker processes
decode and augment real photos, multi-crop, EMA teacher, schedules, logging) for a few steps on
shared/data/train/imagenet-sample, and reads the step times from the run's log. It reports the
median step rate after warm-up, the target from the issue, and the MAE speed-up of mask ratio 0.75
over 0.0 next to the theoretical FLOP ratio.

    .venv/bin/python benchmarks/train_throughput.py [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from highlighter.commands.train import build_config
from highlighter.config import DinoCfg, MaeCfg
from highlighter.train.pretrain import run as pretrain
from highlighter.train.steps import expected_mae_flop_ratio

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "train" / "imagenet-sample"

G224 = dict(global_crop_size=224, local_crop_size=96)
# name, kind, config overrides, target img/s (the figures for this 2-core CPU), steps
CONFIGS = [
    ("DINO ViT-Ti/16 2x224+6x96 bf16", "dino", dict(arch="vit_tiny", local_crops_number=6, precision="bf16", **G224),
     10),
    ("DINO ViT-Ti/16 2x224+6x96 fp32", "dino", dict(arch="vit_tiny", local_crops_number=6, precision="fp32", **G224),
     None),
    ("DINO ViT-Ti/16 2x112+6x48 bf16", "dino", dict(arch="vit_tiny", local_crops_number=6, global_crop_size=112,
                                                   local_crop_size=48, precision="bf16"), 38),
    ("DINO ViT-Ti/16 2x112+6x48 fp32", "dino", dict(arch="vit_tiny", local_crops_number=6, global_crop_size=112,
                                                   local_crop_size=48, precision="fp32"), None),
    ("DINO ViT-S/16 2x224+6x96 bf16", "dino", dict(arch="vit_small", local_crops_number=6, precision="bf16", **G224),
     None),
    ("DINO ViT-S/16 2x112+6x48 bf16", "dino", dict(arch="vit_small", local_crops_number=6, global_crop_size=112,
                                                  local_crop_size=48, precision="bf16"), None),
    ("MAE ViT-Ti/16 224 mask 0.75 bf16", "mae", dict(arch="vit_tiny", mask_ratio=0.75, precision="bf16"), 92),
    ("MAE ViT-Ti/16 224 mask 0.0 bf16", "mae", dict(arch="vit_tiny", mask_ratio=0.0, precision="bf16"), None),
    ("MAE ViT-Ti/16 224 mask 0.75 fp32", "mae", dict(arch="vit_tiny", mask_ratio=0.75, precision="fp32"), None),
    ("MAE ViT-Ti/16 224 mask 0.0 fp32", "mae", dict(arch="vit_tiny", mask_ratio=0.0, precision="fp32"), None),
    ("MAE ViT-S/16 224 mask 0.75 bf16", "mae", dict(arch="vit_small", mask_ratio=0.75, precision="bf16"), None),
    ("MAE ViT-S/16 224 mask 0.0 bf16", "mae", dict(arch="vit_small", mask_ratio=0.0, precision="bf16"), None),
]


def config_for(kind: str, overrides: dict, batch: int, workers: int = 2):
    args = argparse.Namespace(preset="cpu-small", config=None, batch_size=batch, epochs=100, warmup_epochs=1,
                              num_workers=workers, **overrides)
    if kind == "dino":
        args.out_dim = 4096
    return build_config(kind, args)


def measure(kind: str, cfg: DinoCfg | MaeCfg, steps: int, warmup: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        pretrain(kind, cfg, [str(DATA)], tmp, device="cpu", log_every=1, preview_every=0, max_steps=steps,
                 save_every_minutes=1e9)
        wall = time.time() - t0
        times = [json.loads(line)["time"] for line in (Path(tmp) / "log.jsonl").read_text().splitlines()
                 if json.loads(line)["event"] == "step"]
    dts = [b - a for a, b in zip(times, times[1:])][warmup:]
    return {"img_s": cfg.batch_size / statistics.median(dts), "img_s_mean": cfg.batch_size * len(dts) / sum(dts),
            "steps_timed": len(dts), "wall_s": round(wall, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps (noisier)")
    ap.add_argument("--only", help="run the configurations whose name contains this text")
    ap.add_argument("--workers", type=int, default=2, help="data-loading worker processes (default 2)")
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "train_throughput.json"))
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"missing {DATA}", file=sys.stderr)
        return 1
    rows = []
    for name, kind, overrides, target in CONFIGS:
        if args.only and args.only not in name:
            continue
        batch = 16 if kind == "dino" and "224" in name else 32
        cfg = config_for(kind, overrides, batch, args.workers)
        steps = (6 if args.quick else 12) if kind == "dino" else (8 if args.quick else 16)
        r = measure(kind, cfg, steps, warmup=2)
        r.update(name=name, kind=kind, batch=batch, target=target,
                 ratio_to_target=round(r["img_s"] / target, 2) if target else None)
        rows.append(r)
        print(f"{name:36s} {r['img_s']:7.1f} img/s" + (f"   target {target:5.1f}  ratio {r['ratio_to_target']:.2f}"
                                                     if target else ""), flush=True)
    speedups = {}
    for arch in ("Ti", "S"):
        for prec in ("bf16", "fp32"):
            a = next((r for r in rows if r["name"] == f"MAE ViT-{arch}/16 224 mask 0.75 {prec}"), None)
            b = next((r for r in rows if r["name"] == f"MAE ViT-{arch}/16 224 mask 0.0 {prec}"), None)
            if a and b:
                cfg = config_for("mae", dict(arch="vit_tiny" if arch == "Ti" else "vit_small"), 32)
                speedups[f"ViT-{arch} {prec}"] = {"measured": round(a["img_s"] / b["img_s"], 2),
                                                  "theoretical_flops": round(expected_mae_flop_ratio(cfg), 2)}
    print("\n| configuration | batch | img/s (median) | target | ratio |\n|---|---|---|---|---|")
    for r in rows:
        t = f"{r['target']}" if r["target"] else "-"
        q = f"{r['ratio_to_target']:.2f}" if r["target"] else "-"
        print(f"| {r['name']} | {r['batch']} | {r['img_s']:.1f} | {t} | {q} |")
    for k, v in speedups.items():
        print(f"MAE speed-up of mask 0.75 over 0.0, {k}: {v['measured']:.2f}x measured, "
              f"{v['theoretical_flops']:.2f}x theoretical (encoder + decoder FLOPs)")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": {"cpu": platform.processor() or platform.machine(),
                                           "threads": torch.get_num_threads(), "torch": torch.__version__},
                               "rows": rows, "mae_speedup": speedups}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
