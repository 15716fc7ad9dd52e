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
from highlighter.core.inference import AttentionEngine
from highlighter.features import fit_pca, pca_rgb_foreground
from highlighter.images import load_rgb
from highlighter.render import draw_box, label, overlay, side_by_side, stack
from highlighter.results import pca_picture

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
    engine = AttentionEngine(ck, "cpu")
    paths = sorted((ROOT / "assets").glob("*.jpg"))
    photos = [load_rgb(p) for p in paths]
    results = [engine.run(img, args.image_size, tokens=True) for img in photos]
    basis = fit_pca([r.tokens for r in results])  # one basis: a colour means the same direction in every photo
    rows = []
    for path, img, res in zip(paths, photos, results):
        p, mask = res.patch_size, res.fused_mask("mass", 0.6)
        photo = np.asarray(img)
        boxed = draw_box(overlay("mask", photo, res.fused(), mask), res.box(mask))
        boxed = np.asarray(Image.fromarray(boxed).resize(res.image.shape[1::-1], Image.BILINEAR))
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
