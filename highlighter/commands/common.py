"""Helpers shared by the subcommands: messages, checkpoint resolution, output names."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from highlighter.errors import HighlighterError, ImageError
from highlighter.images import expand_inputs, load_rgb
from highlighter.paths import default_checkpoint
from highlighter.results import OutputNames


def warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr, flush=True)


def info(msg: str) -> None:
    print(msg, flush=True)


def resolve_checkpoint(spec: str | None, kind: str) -> str:
    """``None`` or ``default`` -> the model shipped in models/ (or $HIGHLIGHTER_MODELS); the name of official
    weights -> its downloaded file (highlighter/weights.py); anything else unchanged."""
    if spec not in (None, "default"):
        from highlighter.weights import resolve

        return resolve(str(spec))
    return str(default_checkpoint(kind))


def report_model(ck) -> None:
    where = f"{ck.name} ({ck.source})" if ck.path else ck.source
    info(f"model: {ck.vit.describe()}, from {where}")
    from highlighter.card import model_warning

    weak = model_warning(ck.path, ck.meta) if ck.path else None
    if weak:  # the card's line, as the app's model line shows it
        warn(weak)
    if ck.unexpected:
        more = f" and {len(ck.unexpected) - 5} more" if len(ck.unexpected) > 5 else ""
        warn(f"ignored {len(ck.unexpected)} unexpected keys in the checkpoint: {', '.join(ck.unexpected[:5])}{more}")


def check_out_folder(out: str | os.PathLike) -> Path:
    """``--out DIR``: refused when it is a file; created only when something is written into it."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise HighlighterError(f"--out {path}: a file is there, not a folder")
    return path


class PhotoBatch:
    """The photos named on the command line: folders expanded, problems warned about, each photo
    decoded (unreadable ones skipped with a warning naming them), with a progress bar and a summary.

    Made before the model loads: no photo at all is an error at once. The output folder is created by
    ``folder()``, when the first result is written, so a run that writes nothing leaves none behind."""

    def __init__(self, inputs, out: str | os.PathLike, desc: str):
        self.files, problems = expand_inputs(inputs)
        if not self.files:
            raise HighlighterError("no photo to process: " + "; ".join(problems))
        for p in problems:
            warn(p)
        self.out = check_out_folder(out)
        self.desc = desc
        self.names = OutputNames(lambda path, stem: warn(f"{path}: another input is also called "
                                                         f"{path.stem!r}; writing it as {stem!r}"))
        self.done = self.skipped = 0

    def __iter__(self) -> Iterator[tuple[Path, Image.Image]]:
        for path in tqdm(self.files, desc=self.desc, unit="img", disable=None if len(self.files) > 1 else True):
            try:
                img = load_rgb(path)
            except ImageError as e:
                self.skip(f"skipped {e}")
                continue
            yield path, img

    def folder(self) -> Path:
        """The output folder, created now (the first result is about to be written)."""
        self.out.mkdir(parents=True, exist_ok=True)
        return self.out

    def skip(self, message: str) -> None:
        warn(message)
        self.skipped += 1

    def finish(self) -> int:
        unreadable = f"{self.skipped} unreadable file(s)" if self.skipped else ""
        if self.done == 0:
            raise HighlighterError("no image could be processed" + (f" ({unreadable})" if unreadable else ""))
        info(f"wrote {self.done} result(s) to {self.out}" + (f"; skipped {unreadable}" if unreadable else ""))
        return 0
