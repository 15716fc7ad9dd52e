"""Which exported ONNX graphs exist for a model file, found without importing torch.

The app's quick start streams on a model's graph while torch loads (importing torch and timm alone takes longer
than the first-frame target on a small CPU). A graph is known from an index, ``graphs.json``, that maps the model
file's content hash (sha256) to its patch size, head count and graphs by input size:

    {"<sha256>": {"patch_size": 8, "num_heads": 3, "graphs": {"224x400": "dino_default_224x400.onnx"}}}

Two indexes are read: the cache's (written by ``runtime.predictor.onnx_for`` whenever it exports or finds a graph
for a model file) and the models folder's (the shipped default's graph, so that a first start is quick too). A
graph is only used for the file whose content it was exported from: a model file changed in place has another
hash and no graph until the next export. Imports no torch."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from highlighter.fileio import atomic_write  # at import: it reads the umask once, best not in a worker thread

INDEX = "graphs.json"
_HASHES: dict[tuple, str] = {}
_LOCK = threading.Lock()


def file_sha256(path: str | os.PathLike) -> str:
    """The content hash of a file (remembered per path, size and mtime for this process)."""
    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def cache_dir() -> Path:
    """``$HIGHLIGHTER_CACHE``, else the user cache folder's ``highlighter``."""
    if os.environ.get("HIGHLIGHTER_CACHE"):
        return Path(os.environ["HIGHLIGHTER_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "highlighter"


def _shipped_dir() -> Path:
    from highlighter.paths import models_dir

    return models_dir()


@dataclass(frozen=True)
class Graph:
    onnx: Path
    image_size: tuple[int, int]  # (H, W) the graph was exported at
    patch_size: int
    num_heads: int


def _read(folder: Path) -> dict:
    try:
        index = json.loads((folder / INDEX).read_text())
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}


def _entries(model: str | os.PathLike) -> list[tuple[Path, dict]]:
    """(the index's folder, the model's entry) in the cache, then in the models folder."""
    try:
        digest = file_sha256(model)
    except OSError:
        return []
    found = []
    for folder in (cache_dir(), _shipped_dir()):
        entry = _read(folder).get(digest)
        if isinstance(entry, dict) and isinstance(entry.get("graphs"), dict) and entry.get("patch_size"):
            found.append((folder, entry))
    return found


def known(model: str | os.PathLike | None) -> bool:
    """Whether any graph was exported from this model file's content (a quick start may then be tried)."""
    return bool(model) and Path(model).is_file() and bool(_entries(model))


def find(model: str | os.PathLike, short: int, frame_shape: tuple[int, int]) -> Graph | None:
    """The graph for a frame of ``frame_shape`` (H, W) at the shorter side ``short``, or None."""
    from highlighter.preprocess import fit_size

    for folder, entry in _entries(model):  # the first index that has this size (a graph that exists)
        p = int(entry["patch_size"])
        H, W = fit_size(tuple(frame_shape[:2]), short, p)
        name = entry["graphs"].get(f"{H}x{W}")
        if name and (folder / name).is_file():
            return Graph(folder / name, (H, W), p, int(entry.get("num_heads", 0)))
    return None


def record(model: str | os.PathLike, onnx_path: str | os.PathLike, image_size: tuple[int, int], patch_size: int,
           num_heads: int, folder: str | os.PathLike | None = None) -> Path:
    """Add a graph to ``folder``'s index (the cache by default); written atomically. The graph must lie in
    ``folder`` (the index names it relative to its folder, so the folder can move)."""
    folder = Path(folder) if folder is not None else cache_dir()
    onnx_path = Path(onnx_path)
    name = onnx_path.resolve().relative_to(folder.resolve()).as_posix()
    with _LOCK:  # threads of one process in turn; two processes at once may lose an entry (re-recorded later)
        return _record(folder, model, name, image_size, patch_size, num_heads)


def _record(folder: Path, model, name: str, image_size, patch_size: int, num_heads: int) -> Path:
    index = _read(folder)
    digest = file_sha256(model)
    entry = index.get(digest) if isinstance(index.get(digest), dict) else {}
    graphs = entry.get("graphs") if isinstance(entry.get("graphs"), dict) else {}
    H, W = image_size
    graphs[f"{H}x{W}"] = name
    index[digest] = {"patch_size": int(patch_size), "num_heads": int(num_heads), "graphs": graphs,
                     "model": Path(model).name}
    text = json.dumps(index, indent=1, sort_keys=True) + "\n"
    atomic_write(folder / INDEX, lambda tmp: Path(tmp).write_text(text))  # a unique temporary, then a rename
    return folder / INDEX
