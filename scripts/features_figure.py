"""The README picture for feature PCA and boxes: each demo photo with its mask and box (in the photo's own
pixels, as boxes.json), the joint PCA of the patch tokens, and the PCA with the background removed.

    .venv/bin/python scripts/features_figure.py [--checkpoint PATH|NAME|default] [--out docs/features.jpg]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from highlighter.commands.common import resolve_checkpoint
from highlighter.core.formats import load_checkpoint
from highlighter.features import fit_pca, pca_rgb_foreground
from highlighter.images import load_rgb
from highlighter.render import draw_box, label, side_by_side, stack
from highlighter.results import pca_picture
from highlighter.video.pipeline import Settings
from highlighter.video.session import photo_road

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="default")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--threshold", type=float, default=0.5, help="background cut on the first component")
    ap.add_argument("--flip", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "docs" / "features.jpg"))
    args = ap.parse_args()
    ck = load_checkpoint(resolve_checkpoint(args.checkpoint, "attention"))
    road = photo_road(ck, "cpu", args.image_size, settings=Settings(keep_features=True))
    paths = sorted((ROOT / "assets").glob("*.jpg"))
    photos = [load_rgb(p) for p in paths]
    results = [road.process(np.asarray(img)) for img in photos]
    basis = fit_pca([r.tokens for r in results])  # one basis: a colour means the same direction in every photo
    rows = []
    for path, res in zip(paths, results):
        p = res.patch_size
        boxed = draw_box(res.overlay, res.box)
        boxed = np.asarray(Image.fromarray(boxed).resize((res.grid[1] * p, res.grid[0] * p), Image.BILINEAR))
        fg, _ = pca_rgb_foreground(res.tokens, res.grid, args.threshold, args.flip)
        rows.append(side_by_side([boxed, pca_picture(basis.rgb(res.tokens, res.grid), p), pca_picture(fg, p)],
                                 [f"{path.stem}: mask + box", "PCA (one basis, all photos)",
                                  f"PCA, background cut at {args.threshold:g}"]))
    grid = label(stack(rows), f"{ck.vit.describe()} - {ck.name if ck.path else ck.source}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(args.out, quality=88)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
