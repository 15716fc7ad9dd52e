"""Where the shipped data lives: the default models and the demo media, in a checkout or in an installed wheel.

In the repository they stay where they are, ``models/`` and ``assets/`` at the top; the wheel carries them as
package data, ``highlighter/_models/`` and ``highlighter/_assets/`` (see pyproject.toml).
``HIGHLIGHTER_MODELS=DIR`` points every command and the app at another models folder; empty means unset.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from highlighter.errors import CheckpointError

MODELS_ENV = "HIGHLIGHTER_MODELS"
DEFAULT_MODELS = {"attention": "dino_default.safetensors", "mae": "mae_default.safetensors"}
DEMO_CLIP = "cockatoo_320x180_5s.mp4"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")

_PACKAGE = Path(__file__).resolve().parent


def _shipped(name: str) -> Path:
    """The installed copy (``highlighter/_<name>``) when there is one, else the checkout's ``<name>/``."""
    packaged = _PACKAGE / f"_{name}"
    return packaged if packaged.is_dir() else _PACKAGE.parent / name


def models_dir() -> Path:
    env = os.environ.get(MODELS_ENV, "").strip()
    return Path(env).expanduser() if env else _shipped("models")


def assets_dir() -> Path:
    return _shipped("assets")


def default_checkpoint(kind: str) -> Path:
    """The default model for ``attention`` (DINO) or ``mae``; CheckpointError when it is not there."""
    folder = models_dir()
    path = folder / DEFAULT_MODELS[kind]
    if not path.is_file():
        raise CheckpointError(
            f"no default {kind} model in {folder} (expected {path.name}); pass --checkpoint PATH, "
            "or --checkpoint random:vit_small/16 for an untrained pipeline demo")
    return path


def default_checkpoint_or_none(kind: str) -> Path | None:
    try:
        return default_checkpoint(kind)
    except CheckpointError:
        return None


RUN_CHECKPOINT = "checkpoint.pth"  # what `highlighter train` writes in its run folder, with log.jsonl
RUN_BEST = "probe_best.safetensors"  # the teacher at the run's best objectness probe


def _last_checkpoint_step(run: Path) -> int | None:
    """The step of the last checkpoint the run logged (log.jsonl's last 'checkpoint' event); None if unknown."""
    log = run / "log.jsonl"
    try:
        with open(log, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            for tail in (1 << 16, size):  # the end of the log first: it is one line per step
                f.seek(max(0, size - tail))
                for line in reversed(f.read().splitlines()):
                    if b'"checkpoint"' in line:
                        try:
                            return int(json.loads(line)["step"])
                        except (ValueError, KeyError, TypeError):
                            continue
                if tail >= size:
                    break
    except OSError:
        pass
    return None


def _safetensors_steps(path: Path) -> int | None:
    """The steps a probe_best file was trained for, from its header (the tensors are not read)."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 0 < n < 1 << 24:
                return None
            meta = json.loads(f.read(n)).get("__metadata__", {})
        return int(json.loads(meta["highlighter"])["trained"]["steps"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def checkpoint_label(path: str | os.PathLike) -> str:
    """How a file is named in pickers: a training run's files by their run folder and step ("run1, step 1200"),
    since every run's checkpoint is called checkpoint.pth; anything else by its file name."""
    p = Path(path)
    if p.name == RUN_CHECKPOINT:
        step = _last_checkpoint_step(p.parent)
        return f"{p.parent.name}, step {step}" if step is not None else f"{p.parent.name} ({p.name})"
    if p.name == RUN_BEST:
        step = _safetensors_steps(p)
        return f"{p.parent.name}, best probe" + (f" (step {step})" if step is not None else "")
    return p.name


def model_label(spec: str | os.PathLike | None) -> str:
    """A model's name for captions: ``random:ARCH/PATCH (untrained)``, or its file as pickers name it."""
    if spec is None:
        return "(loading)"
    return f"{spec} (untrained)" if str(spec).startswith("random:") else checkpoint_label(spec)


def demo_clip() -> Path:
    """The bundled video (it may be missing from a stripped-down install: check ``exists()``)."""
    return assets_dir() / DEMO_CLIP


def demo_photos() -> list[Path]:
    folder = assets_dir()
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES) if folder.is_dir() else []
