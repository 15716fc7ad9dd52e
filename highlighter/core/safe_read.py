"""Reading checkpoint files safely: bytes to Python objects without running any code from the file.

Pickles are read with ``torch.load(weights_only=True)``, allow-listing only ``argparse.Namespace`` (official
files store their ``args`` that way); a pickle that would import code is refused, naming what it asked for
(read from its opcodes, never executed). ``.safetensors`` files hold no code at all. Every problem raises
``CheckpointError`` with a one-line message.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from highlighter.errors import CheckpointError


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 0 < n <= size - 8 and head[8:9] == b"{"


PICKLE_SUFFIXES = {".pth", ".pt", ".pkl", ".pickle", ".bin", ".ckpt", ".tar"}


def content_kind(head: bytes, size: int) -> str:
    """What the first bytes say a file holds: ``safetensors``, ``zip`` (torch.save's archive), ``pickle``
    (a pickle of protocol 2 or newer, as torch.save's legacy format), else ``unknown``."""
    if _is_safetensors(head, size):
        return "safetensors"
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if head[:1] == b"\x80" and head[1:2] and 2 <= head[1] <= 5:
        return "pickle"
    return "unknown"


def check_content_matches_name(p: Path, kind: str) -> None:
    """The checkpoint doctor: a file whose content is not what its name says is refused before any loader
    (torch.load, which hands a ``.safetensors`` name to safetensors, or safetensors itself) sees it."""
    suffix = p.suffix.lower()
    if suffix == ".safetensors" and kind != "safetensors":
        raise CheckpointError(f"{p}: not a valid safetensors file (its header is not a safetensors header"
                              + (f"; the content is a PyTorch {kind} file: name it .pth)" if kind != "unknown"
                                 else ")"))
    if suffix in PICKLE_SUFFIXES:
        if kind == "safetensors":
            raise CheckpointError(f"{p}: the content is a safetensors file, not what a {suffix} name says: "
                                  "name it .safetensors")
        if kind == "unknown":
            raise CheckpointError(f"{p}: not a PyTorch or safetensors checkpoint")


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            return {k: f.get_tensor(k) for k in f.keys()}, meta
    except Exception as e:  # the library raises several types for bad headers and short files
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise CheckpointError(f"{path}: not a valid safetensors file (truncated or corrupt: {reason})") from None


def read_checkpoint_file(path: str | os.PathLike) -> tuple[Any, dict[str, str] | None]:
    """Return (object, safetensors metadata or None for a pickle) without running any code from the file."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.is_dir():
        raise CheckpointError(f"{p} is a folder, not a checkpoint file")
    size = p.stat().st_size
    if size == 0:
        raise CheckpointError(f"{p}: the file is empty")
    with open(p, "rb") as f:
        head = f.read(16)
    kind = content_kind(head, size)
    check_content_matches_name(p, kind)
    if kind == "safetensors":
        return _read_safetensors(p)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch's note on pickle protocols: the error says it all
            return torch.load(p, map_location="cpu", weights_only=True), None
    except pickle.UnpicklingError as e:
        msg = str(e)
        named = re.search(r"GLOBAL ([\w.]+)", msg)
        imports = [named.group(1)] if named else [g for g in pickle_imports(p) if g not in _SAFE_GLOBALS]
        if imports:
            raise CheckpointError(f"{p}: refused to load: the file would import Python code ({imports[0]}); "
                                  "highlighter never executes code from checkpoints") from None
        if "truncated" in msg or "ran out of input" in msg.lower():
            raise CheckpointError(f"{p}: the file is truncated or corrupt") from None
        raise CheckpointError(f"{p}: not a PyTorch or safetensors checkpoint") from None
    except (EOFError, zipfile.BadZipFile):
        raise CheckpointError(f"{p}: the file is truncated or corrupt") from None
    except RuntimeError as e:
        msg = str(e)
        if "zip archive" in msg or "central directory" in msg or "file not found" in msg.lower():
            raise CheckpointError(f"{p}: the file is truncated or corrupt (bad zip archive)") from None
        raise CheckpointError(f"{p}: cannot be read as a checkpoint ({msg.splitlines()[0][:120]})") from None
    except (ValueError, OSError, KeyError, TypeError, AttributeError, IndexError):
        raise CheckpointError(f"{p}: not a PyTorch or safetensors checkpoint") from None


_SAFE_GLOBALS = {"collections.OrderedDict", "argparse.Namespace", "torch._utils._rebuild_tensor_v2",
                 "torch._utils._rebuild_parameter", "torch.FloatStorage", "torch.HalfStorage",
                 "torch.BFloat16Storage", "torch.LongStorage", "torch.IntStorage", "torch.BoolStorage",
                 "torch.DoubleStorage", "torch.ByteStorage", "torch.storage.UntypedStorage"}


def pickle_imports(path: Path) -> list[str]:
    """The ``module.name`` globals a pickle (or torch zip archive) would import, read from its opcodes
    with pickletools, so that nothing in it is executed."""
    import pickletools

    data = path.read_bytes()
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                data = z.read(name) if name else b""
        except (zipfile.BadZipFile, OSError, KeyError):
            return []
    found, strings = [], []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                strings.append(str(arg))
            elif op.name == "GLOBAL":
                found.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
    except Exception:  # a damaged stream: report what was seen before the damage
        pass
    return found
