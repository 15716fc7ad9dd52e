"""Start the real app on a virtual X display (Xvfb), drive each tab, and save one PNG per tab.

Needs Debian's xvfb and imagemagick (and libxcb-cursor0, libxcb-icccm4, libxcb-keysyms1 for Qt's xcb
platform). The screenshots are real X captures (ImageMagick's `import -window root`), not Qt's grab.

    .venv/bin/python scripts/screenshots.py [--out screenshots]      # SCREENSHOTS_SLOW=3: a 3x longer timeline
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def capture(path: Path) -> None:
    subprocess.run(["import", "-window", "root", str(path)], check=True)
    print(f"saved {path}", flush=True)


def drive(out: Path) -> int:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from highlighter.gui.app import MainWindow

    app = QApplication([])
    win = MainWindow(quiet=True)
    win.setGeometry(0, 0, 1400, 950)
    win.show()
    frames = SHARED / "video" / "blackswan" / "frames"
    win.live.source.setCurrentText(str(frames if frames.is_dir() else ROOT / "assets" / "cockatoo_320x180_5s.mp4"))
    win.live.start()
    tmp = Path(tempfile.mkdtemp())
    steps = []

    slow = float(os.environ.get("SCREENSHOTS_SLOW", "1"))  # stretch the timeline on a busy machine

    def at(seconds, fn):
        steps.append((seconds * slow, fn))

    def mae():
        from highlighter.images import load_rgb

        win.tabs.setCurrentWidget(win.mae)
        win.mae.set_image(load_rgb(ROOT / "assets" / "chelsea_cat.jpg"))

    def train():
        data = tmp / "photos"
        data.mkdir()
        src = SHARED / "train" / "tinyimagenet" / "train"
        for f in sorted(src.rglob("*.JPEG"))[:48]:
            shutil.copy(f, data / f.name)
        win.tabs.setCurrentWidget(win.train)
        t = win.train
        t.folders.addItem(str(data))
        t.out.setText(str(tmp / "run"))
        t.epochs.setValue(4)
        t.batch.setValue(8)
        t.extra_args = ["--arch", "vit_tiny", "--global-crop-size", "64", "--local-crop-size", "32",
                        "--num-workers", "1", "--warmup-epochs", "1", "--preview-every", "6"]
        t.start()

    def pick():  # Live click-to-compare: a patch near the middle of the frame shown (the swan)
        live = win.live
        res = live.shown if hasattr(live, "shown") else None
        if res is None or res.tokens is None:
            QTimer.singleShot(500, pick)
            return
        h, w = res.mask.shape
        live.pick_patch(res, (h // 2) * w + w // 2)

    def track():  # Live's Track: a box drawn around the swan (from its ground-truth mask), followed frame by frame
        import numpy as np
        from PIL import Image

        live = win.live
        live.clear_similarity()
        live.compare_box.setChecked(False)
        live.track.box.setChecked(True)
        res = live.shown if hasattr(live, "shown") else None
        gt = SHARED / "video" / "blackswan" / "masks" / f"{getattr(res, 'name', '')}.png"
        if res is None or res.tokens is None or not gt.exists():
            QTimer.singleShot(500, track)
            return
        ys, xs = np.nonzero(np.asarray(Image.open(gt)) > 127)
        live.track.boxed(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)

    def compare():  # the untrained demo next to the loaded model: what training adds
        win.live.track.clear()
        win.live.track.box.setChecked(False)
        win.live.clear_similarity()
        win.live.compare_box.setChecked(False)
        win.compare_with("random:vit_small/16")

    def photos_compare():
        win.live.stop()
        win.tabs.setCurrentWidget(win.photos)
        win.photos.add_paths([str(ROOT / "assets")])

    at(10, lambda: capture(out / "live.png"))
    at(10.5, lambda: win.live.compare_box.setChecked(True))
    at(13, pick)
    at(16, lambda: capture(out / "live_similarity.png"))
    at(16.5, track)
    at(26, lambda: capture(out / "live_track.png"))
    at(26.5, compare)
    at(37, lambda: capture(out / "live_compare.png"))
    at(38, photos_compare)
    at(48, lambda: capture(out / "photos_compare.png"))
    at(49, win.stop_comparing)
    at(51, lambda: capture(out / "photos.png"))
    at(52, mae)
    at(58, lambda: capture(out / "mae.png"))
    at(59, train)
    at(106, lambda: capture(out / "train.png"))
    at(107, app.quit)
    for seconds, fn in steps:
        QTimer.singleShot(int(seconds * 1000), fn)
    app.exec()
    win.train.stop()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="screenshots")
    ap.add_argument("--driven", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.driven:
        return drive(out)
    for tool in ("Xvfb", "import"):
        if not shutil.which(tool):
            print(f"{tool} is missing: apt-get install xvfb imagemagick libxcb-cursor0 libxcb-icccm4 "
                  "libxcb-keysyms1", file=sys.stderr)
            return 1
    display = ":97"
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1400x950x24", "-nolisten", "tcp"])
    try:
        time.sleep(1.5)
        env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb",
               "HIGHLIGHTER_SETTINGS": str(Path(tempfile.mkdtemp()) / "settings.ini")}
        return subprocess.run([sys.executable, __file__, "--out", str(out), "--driven"], env=env).returncode
    finally:
        xvfb.terminate()


if __name__ == "__main__":
    sys.exit(main())
