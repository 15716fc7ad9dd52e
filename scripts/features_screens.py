"""Pictures of the PCA and similarity views in the app: the Photos tab (PCA panel, a clicked patch's
similarity and its matches) and the Live tab in the pca overlay with the box, each grabbed with Qt's
``QWidget.grab`` (it runs offscreen; scripts/screenshots.py takes real X captures of the whole window).

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/features_screens.py \
        [--checkpoint default] [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def wait(app, cond, timeout=500.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        app.processEvents()
        time.sleep(0.02)
        if time.monotonic() > end:
            raise TimeoutError("the app did not get there in time")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="default: the shipped model")
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = ap.parse_args()
    os.environ.setdefault("HIGHLIGHTER_SETTINGS", str(Path(tempfile.mkdtemp()) / "settings.ini"))
    from PySide6.QtWidgets import QApplication

    from highlighter.gui.app import MainWindow

    app = QApplication([])
    win = MainWindow(checkpoint=args.checkpoint, quiet=True)
    win.resize(1500, 950)
    win.show()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tab = win.photos
    win.tabs.setCurrentWidget(tab)
    names = ["coffee_cup.jpg", "wikkie_cat.jpg", "chelsea_cat.jpg"]
    tab.add_paths([str(ROOT / "assets" / n) for n in names])
    wait(app, lambda: tab.gallery.count() == 3)
    for row in range(3):  # each photo analysed once, so the clicked patch has photos to be matched in
        tab.gallery.setCurrentRow(row)
        wait(app, lambda: tab.current_result() is not None and tab.pca_panel.result is tab.current_result())
    res = tab.current_result()
    h, w = res.grid
    tab.sim_panel.click_patch((h // 2) * w + (w * 2) // 3)  # a patch on the cat's face
    app.processEvents()
    tab.grab().save(str(out / "photos_features.png"))
    print(f"saved {out / 'photos_features.png'}")

    live = win.live
    win.tabs.setCurrentWidget(live)
    frames = SHARED / "video" / "blackswan" / "frames"
    live.source.setCurrentText(str(frames if frames.is_dir() else ROOT / "assets" / "cockatoo_320x180_5s.mp4"))
    win.state.set_overlay("pca")
    live.box.setChecked(True)
    live.start()
    wait(app, lambda: live.latest is not None and live.latest.pca is not None and live.frames_shown > 30)
    live.grab().save(str(out / "live_pca.png"))
    print(f"saved {out / 'live_pca.png'}")
    live.stop()
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
