"""What tracking costs in the real Live tab (offscreen Qt, torch fp32, no backend choice): the fps shown over N
frames plain, then with Track on (tokens kept) before a pick, then tracking a box around the object of a DAVIS-style
sequence (its first shown frame's ground-truth mask's bounding box, given to the tab as a drag would).

    .venv/bin/python benchmarks/track_live.py [--sequence ../shared/data/video/blackswan] [--size 224] [--frames 20]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sequence", default=str(ROOT.parent / "shared" / "data" / "video" / "blackswan"))
    ap.add_argument("--checkpoint", default=str(ROOT / "models" / "dino_default.safetensors"))
    ap.add_argument("--size", type=int, default=224, help="the shorter side fed to the model (default 224)")
    ap.add_argument("--frames", type=int, default=20, help="frames measured per phase (default 20)")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="highlighter-track-bench-")
    for var, value in (("HIGHLIGHTER_SETTINGS", f"{tmp}/settings.ini"), ("HIGHLIGHTER_CACHE", f"{tmp}/cache")):
        os.environ.setdefault(var, value)

    import numpy as np
    from PIL import Image
    from PySide6.QtWidgets import QApplication

    app = QApplication([])
    from highlighter.gui.app import MainWindow
    from highlighter.gui.live import LiveTab

    LiveTab._choose = lambda self: None  # stay on torch fp32: the backend that gives the tokens
    w = MainWindow(checkpoint=args.checkpoint, quiet=True)
    w.resize(1400, 860)
    w.show()
    w.state.set_image_size(args.size)
    live = w.live

    def wait(cond, timeout=600.0):
        end = time.time() + timeout
        while not cond():
            if time.time() > end:
                raise TimeoutError("the stream stalled")
            app.processEvents()
            time.sleep(0.005)

    def fps(n: int) -> dict:
        n0, t0 = live.frames_shown, time.perf_counter()
        wait(lambda: live.frames_shown >= n0 + n)
        t = live.shown.timings
        return {"fps": round(n / (time.perf_counter() - t0), 2), "model_ms": round(t["model_ms"], 1),
                "track_ms": round(t["track_ms"], 1) if "track_ms" in t else None}

    seq = Path(args.sequence)
    live.source.setCurrentText(str(seq / "frames"))
    live.start()
    wait(lambda: live.frames_shown >= 3)
    out = {"plain": fps(args.frames)}
    live.track.box.setChecked(True)
    wait(lambda: live.shown.tokens is not None)
    out["tokens kept"] = fps(args.frames)
    res = live.shown
    ys, xs = np.nonzero(np.asarray(Image.open(seq / "masks" / f"{res.name}.png")) > 0)
    live.track.boxed(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    if live.pipeline.tracker is None:
        raise SystemExit(live.status.text())
    wait(lambda: live.shown.track is not None)
    out["tracking"] = fps(args.frames)
    out.update(backend=live.pipeline.predictor.name, image_size=list(live.pipeline.predictor.image_size),
               grid=list(res.mask.shape), sequence=seq.name)
    live.stop()
    w.close()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
