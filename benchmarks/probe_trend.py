"""Rank DINO runs by the trend of their objectness probe (the `probe` events in each run's log.jsonl).

    python benchmarks/probe_trend.py RUNDIR... [--baseline RUNDIR] [--size S] [--json FILE]

For each run: what it changes against the baseline's configuration, images seen, and per probe folder the
in/out ratio and the mass-rule IoU at the first and last probe, with the slope of in/out per 10k images (a
least-squares line through every probe). A run is ranked by the mean slope over the folders: where the
attention is heading, not where one endpoint happens to be.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def read_log(run: Path) -> tuple[dict, list[dict]]:
    config, probes = {}, []
    for line in (run / "log.jsonl").read_text().splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("event") == "start" and not config:
            config = ev.get("config", {})
        elif ev.get("event") == "probe":
            probes.append(ev)
    dedup = {}
    for p in probes:  # a resumed run probes its first step again
        dedup[p["images_seen"]] = p
    return config, [dedup[k] for k in sorted(dedup)]


def summarise(run: Path, size: str | None, baseline: dict | None, upto: int = 0) -> dict:
    config, probes = read_log(run)
    if upto:
        probes = [p for p in probes if p["images_seen"] <= upto]
    if not probes:
        return {"run": run.name, "probes": 0}
    sets = [k for k, v in probes[0].items() if isinstance(v, dict) and k != "flat"]
    size = size or min(probes[0][sets[0]], key=int)
    out = {"run": run.name, "probes": len(probes), "images_seen": probes[-1]["images_seen"], "size": size,
           "changes": {k: v for k, v in config.items() if baseline is not None and baseline.get(k) != v},
           "sets": {}}
    seen = np.array([p["images_seen"] for p in probes], dtype=float) / 1e4
    for s in sets:
        io = np.array([p[s][size]["in_out"] for p in probes])
        iou = {r: [p[s][size]["iou"][r] for p in probes] for r in probes[0][s][size]["iou"]}
        slope = float(np.polyfit(seen, io, 1)[0]) if len(probes) > 1 and np.ptp(seen) > 0 else float("nan")
        out["sets"][s] = {"in_out_first": float(io[0]), "in_out_last": float(io[-1]), "in_out_slope_per_10k": slope,
                          "iou_last": {r: float(v[-1]) for r, v in iou.items()},
                          "border_last": float(probes[-1][s][size]["border"])}
    out["score"] = float(np.mean([v["in_out_slope_per_10k"] for v in out["sets"].values()]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--baseline", type=Path, help="the run the others are compared with (default: the first)")
    ap.add_argument("--size", help="probe size to read (default: the smallest probed)")
    ap.add_argument("--upto", type=int, default=0, help="only probes up to this many images seen")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    base_cfg = read_log(args.baseline or args.runs[0])[0]
    rows = []
    for run in args.runs:
        rows.append(summarise(run, args.size, base_cfg, args.upto))
    rows.sort(key=lambda r: -r.get("score", -1e9))
    for r in rows:
        if not r.get("probes"):
            print(f"{r['run']}: no probe events")
            continue
        changes = ", ".join(f"{k}={v}" for k, v in r["changes"].items() if k != "epochs") or "(baseline)"
        print(f"{r['run']}  [{changes}]  {r['probes']} probes, {r['images_seen']} images, {r['size']} px, "
              f"trend {r['score']:+.4f} in/out per 10k images")
        for s, v in r["sets"].items():
            ious = " ".join(f"{k} {x:.3f}" for k, x in v["iou_last"].items())
            print(f"    {s:14s} in/out {v['in_out_first']:.3f} -> {v['in_out_last']:.3f} "
                  f"({v['in_out_slope_per_10k']:+.4f}/10k)  border {v['border_last']:.2f}  IoU {ious}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
