"""``highlighter weights list|get``: the official weights by name (the work is in highlighter/weights.py)."""

from __future__ import annotations

import json

from highlighter.commands.common import info


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def _list(args) -> int:
    from highlighter.catalogue import CATALOGUE
    from highlighter.weights import local_path, weights_dir

    rows = []
    for e in CATALOGUE.values():
        path = local_path(e, args.cache)
        have = path.is_file()
        rows.append({"name": e.name, "url": e.url, "arch": e.arch, "family": e.family, "depth": e.depth,
                     "registers": e.registers, "decoder": e.decoder,
                     "size": path.stat().st_size if have else None,  # exact, once downloaded
                     "approx_size": e.estimated_bytes(),  # float32 parameters x 4 bytes
                     "params_published": e.params,
                     "checksum": {e.checksum[0]: e.checksum[1]} if e.checksum else None,
                     "source": e.source, "note": e.note, "downloaded": have, "path": str(path) if have else None,
                     "gated": e.gated or None, "licence": e.licence or None, "hub": e.hub or None})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    info(f"{'name':32s} {'arch':27s} {'size':>9s}  status")
    for r in rows:
        size = _size(r["size"]) if r["size"] else "~" + _size(r["approx_size"])
        extra = " + 4 registers" if r["registers"] else " + decoder" if r["decoder"] else ""
        status = (f"downloaded: {r['path']}" if r["downloaded"] else
                  "gated: accept the licence, then weights get NAME --file PATH" if r["gated"] else "-")
        info(f"{r['name']:32s} {r['arch'] + extra:27s} {size:>9s}  {status}")
    info(f"cache: {weights_dir(args.cache)}; `highlighter weights get NAME` downloads one, then "
         "--checkpoint NAME uses it")
    if any(r["gated"] for r in rows):
        first = next(e for e in CATALOGUE.values() if e.gated)
        info(f"the DINOv3 files are licensed under the DINOv3 License ({first.licence}), which must be accepted "
             f"before download, at {first.gated}; `highlighter weights get NAME` says how to get and use one")
    return 0


def _adopt(args, entry) -> int:
    from highlighter.weights import adopt

    res = adopt(entry, args.file, cache=args.cache)
    ck = res.checkpoint
    check = f", {entry.checksum[0]} matches the published {entry.checksum[1]}" if entry.checksum else ""
    info(f"verified: {ck.vit.describe()}; read as {ck.source}{check}")
    info(f"{entry.name} is already kept: {res.path}" if res.already else f"saved {res.path} (a copy of {args.file})")
    env = f" (with HIGHLIGHTER_CACHE={args.cache})" if args.cache else ""
    info(f"use it with --checkpoint {entry.name}{env}")
    return 0


def _get(args) -> int:
    from tqdm import tqdm

    from highlighter.catalogue import lookup
    from highlighter.errors import HighlighterError
    from highlighter.weights import download, local_path

    entry = lookup(args.name)
    if getattr(args, "file", None):
        if args.mirror:
            raise HighlighterError("--file and --mirror exclude each other: --file keeps a file you downloaded")
        return _adopt(args, entry)
    if entry.gated and not local_path(entry, args.cache).is_file():
        raise HighlighterError(entry.gated_message())
    bar: list[tqdm] = []

    def progress(done: int, total: int | None) -> None:
        if not bar:
            bar.append(tqdm(total=total, initial=done, unit="B", unit_scale=True, unit_divisor=1024,
                            desc=entry.name, disable=None, leave=True))
        bar[0].update(done - bar[0].n)

    try:
        res = download(entry, mirror=args.mirror, cache=args.cache, progress=progress, log=info)
    finally:
        if bar:
            bar[0].close()
    if res.already:
        info(f"{entry.name} is already downloaded: {res.path}")
    else:
        ck = res.checkpoint
        resumed = f", resumed after {res.resumed_from / 1e6:.1f} MB" if res.resumed_from else ""
        check = f", {entry.checksum[0]} matches the published {entry.checksum[1]}" if entry.checksum else ""
        decoder = f" + MAE decoder (dim {ck.decoder.embed_dim}, depth {ck.decoder.depth})" if ck.decoder else ""
        info(f"verified: {ck.vit.describe()}{decoder}; read as {ck.source}{check}{resumed}")
        info(f"saved {res.path} ({res.path.stat().st_size / 1e6:.1f} MB)")
    env = f" (with HIGHLIGHTER_CACHE={args.cache})" if args.cache else ""
    info(f"use it with --checkpoint {entry.name}{env}")
    return 0


def run(args) -> int:
    return _list(args) if args.action == "list" else _get(args)
