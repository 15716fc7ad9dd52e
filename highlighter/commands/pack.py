"""``highlighter pack``: training photos into one zip small enough to carry to a GPU machine."""

from __future__ import annotations

from highlighter.commands.common import info
from highlighter.errors import HighlighterError


def run(args) -> int:
    from highlighter.train.packed import pack_images

    if not args.out.endswith(".zip"):
        raise HighlighterError("--out must end in .zip")
    s = pack_images(args.folders, args.out, args.max_side, args.quality, args.format)
    info(f"wrote {args.out}: {s['images']} photos ({s['kept']} kept as they were, {s['resized']} re-encoded "
         f"as {args.format} at <= {args.max_side} px), {s['bytes'] / 1e6:.1f} MB"
         + (f"; skipped {s['unreadable']} unreadable" if s["unreadable"] else ""))
    return 0
