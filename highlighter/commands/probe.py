"""``highlighter probe``: the objectness probe of a DINO checkpoint (see highlighter/probe.py)."""

from __future__ import annotations

import json
from pathlib import Path

from highlighter.commands.common import info, report_model, resolve_checkpoint
from highlighter.core.build import build_attention_model
from highlighter.core.device import resolve_device
from highlighter.core.formats import load_checkpoint
from highlighter.errors import HighlighterError
from highlighter.probe import Probe, default_probe_folders, format_table, probe_sizes


def run(args) -> int:
    spec = resolve_checkpoint(args.checkpoint, "attention")  # a name and the folders: checked before loading
    folders = [Path(d) for d in args.data] if args.data else default_probe_folders()
    if not folders:
        raise HighlighterError("no probe folders: pass --data DIR (folders with images/ and masks/)")
    for folder in folders:  # before the model loads
        if not ((folder / "images").is_dir() and (folder / "masks").is_dir()):
            raise HighlighterError(f"probe folder {folder}: needs images/ and masks/ sub-folders")
    ck = load_checkpoint(spec, checkpoint_key=args.checkpoint_key,
                         num_heads=args.num_heads)
    report_model(ck)
    device = resolve_device(args.device)
    probe = Probe(folders, ck.vit.patch_size, args.sizes or probe_sizes(ck), split=args.split)
    info(probe.describe())
    result = probe(build_attention_model(ck, device), device)
    info(format_table(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"model": ck.path or ck.source, "source": probe.describe(),
                                               "split": args.split, **result}, indent=2))
        info(f"wrote {args.json}")
    return 0
