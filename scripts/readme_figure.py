"""The README picture: each demo photo with its fused attention map and DINO mask.

    .venv/bin/python scripts/readme_figure.py [--checkpoint PATH|default] [--out docs/figure.jpg]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

from highlighter.commands.common import resolve_checkpoint
from highlighter.core.formats import load_checkpoint
from highlighter.core.inference import AttentionEngine
from highlighter.images import load_rgb
from highlighter.render import heatmap, label, overlay, side_by_side, stack

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="default")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--out", default=str(ROOT / "docs" / "figure.jpg"))
    args = ap.parse_args()
    ck = load_checkpoint(resolve_checkpoint(args.checkpoint, "attention"))
    engine = AttentionEngine(ck, "cpu")
    rows = []
    for path in sorted((ROOT / "assets").glob("*.jpg")):
        res = engine.run(load_rgb(path), args.image_size)
        p = res.patch_size
        mask = res.fused_mask("mass", 0.6)
        rows.append(side_by_side([res.image, heatmap(res.fused(), p), overlay("mask", res.image, res.fused(), mask)],
                                 [path.stem, "fused attention", "mask (60% of the mass)"]))
    grid = label(stack(rows, gap=6), f"{ck.vit.describe()} - {ck.name if ck.path else ck.source}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(args.out, quality=88)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
