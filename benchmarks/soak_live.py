"""Soak: the real Live tab on the looping bundled clip for N minutes (offscreen Qt).

Samples the process's resident memory every 10 s after a 30 s warm-up, and checks that the frame slot
never holds more than one frame and that frames keep flowing. Prints a table and writes JSON.

    .venv/bin/python benchmarks/soak_live.py [--minutes 10] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--checkpoint", default="random:vit_small/16")
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "soak_live.json"))
    args = ap.parse_args()
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from highlighter.gui.app import MainWindow

    os.environ.setdefault("HIGHLIGHTER_SETTINGS", "/tmp/highlighter-soak.ini")
    app = QApplication([])
    win = MainWindow(checkpoint=args.checkpoint, quiet=True)
    win.resize(1280, 860)
    win.show()
    from highlighter.paths import demo_clip

    win.live.source.setCurrentText(str(demo_clip()))
    win.live.start()
    t0 = time.time()
    samples: list[dict] = []
    max_slot = [0]

    def sample():
        live = win.live
        if live.runner is not None:
            max_slot[0] = max(max_slot[0], len(live.runner.slot), live.runner.slot.max_len)
        elapsed = time.time() - t0
        samples.append({"t": round(elapsed, 1), "rss_mb": round(rss_mb(), 1), "frames": live.frames_shown,
                        "status": live.status.text()[:80]})
        print(f"{elapsed:7.0f} s  RSS {samples[-1]['rss_mb']:7.1f} MB  frames shown {live.frames_shown}", flush=True)
        if elapsed >= args.minutes * 60:
            win.live.stop()
            app.quit()

    timer = QTimer()
    timer.timeout.connect(sample)
    timer.start(10_000)
    app.exec()
    after = [s for s in samples if s["t"] >= 30]
    base, peak, last = after[0]["rss_mb"], max(s["rss_mb"] for s in after), after[-1]["rss_mb"]
    frames = samples[-1]["frames"]
    result = {"minutes": args.minutes, "rss_after_warmup_mb": base, "rss_peak_mb": peak, "rss_end_mb": last,
              "growth_mb": round(peak - base, 1), "frames_shown": frames,
              "fps": round(frames / samples[-1]["t"], 1), "max_slot_len": max_slot[0],
              "crashed": False, "samples": samples}
    ok = result["growth_mb"] <= 50 and max_slot[0] <= 1 and frames > 0
    print("\n| minutes | RSS after warm-up | peak | growth | frames | fps | max slot | verdict |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {args.minutes:g} | {base:.0f} MB | {peak:.0f} MB | {peak - base:+.1f} MB | {frames} | {result['fps']} | "
          f"{max_slot[0]} | {'pass' if ok else 'FAIL'} |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
