"""The README picture: each demo photo with its fused attention map and DINO mask.

    .venv/bin/python scripts/readme_figure.py [--checkpoint PATH|default] [--out docs/figure.jpg]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from highlighter.commands.common import resolve_checkpoint
from highlighter.core.formats import load_checkpoint
from highlighter.images import load_rgb
from highlighter.render import heatmap, label, side_by_side, stack
from highlighter.video.pipeline import Settings
from highlighter.video.session import photo_road

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="default")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--out", default=str(ROOT / "docs" / "figure.jpg"))
    args = ap.parse_args()
    ck = load_checkpoint(resolve_checkpoint(args.checkpoint, "attention"))
    road = photo_road(ck, "cpu", args.image_size, settings=Settings(keep_features=True))
    rows = []
    for path in sorted((ROOT / "assets").glob("*.jpg")):
        res = road.process(np.asarray(load_rgb(path)))
        p = res.patch_size
        size = (res.grid[1] * p, res.grid[0] * p)  # each panel at the model's input size
        photo, drawn = (np.asarray(Image.fromarray(a).resize(size, Image.BILINEAR)) for a in (res.frame, res.overlay))
        rows.append(side_by_side([photo, heatmap(res.fused, p), drawn],
                                 [path.stem, "fused attention", "mask (60% of the mass)"]))
    grid = label(stack(rows, gap=6), f"{ck.vit.describe()} - {ck.name if ck.path else ck.source}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(args.out, quality=88)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
