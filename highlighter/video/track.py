"""Tracking what the first frame's mask marks through a video or a folder of frames: DINO's label propagation
(``core.propagation``) on the frames at their size, as eval_video_segmentation.py feeds them.

Everything a run needs is checked before it starts (``read_first_mask``, ``check_frames``), so that bad input
ends with one line and nothing written. Unlike the live road (``video.pipeline``), this imports torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from highlighter.core.build import build_attention_model
from highlighter.core.device import resolve_device
from highlighter.core.propagation import LabelPropagation, PropagationCfg, label_grid, one_hot, upsample_labels
from highlighter.errors import HighlighterError
from highlighter.preprocess import davis, track_size

MAX_OBJECTS = 32  # more label values than this is a greyscale picture or an anti-aliased mask, not objects


@dataclass
class FirstMask:
    """The first frame's objects: ``labels`` (H, W) uint8 indices, 0 = background, 1..K = objects; ``values``
    [0, v1, ..., vK]: the value each index has in the mask file and gets in the written masks (255 for a lone
    object)."""

    labels: np.ndarray
    values: list[int]
    file_values: list[int] | None = None  # [0, v1, ..., vK] as in the file (None: ``values``)

    @property
    def num_labels(self) -> int:
        return len(self.values)

    def to_values(self, labels: np.ndarray) -> np.ndarray:
        """Label indices -> the values written to the mask PNGs."""
        return np.asarray(self.values, np.uint8)[labels]

    def labels_of(self, values: np.ndarray) -> np.ndarray:
        """Another mask of the same objects (values as in the first mask's file) -> label indices; values the first
        mask does not have count as background."""
        lut = np.zeros(256, np.uint8)
        file_values = self.file_values or self.values
        lut[file_values[1:]] = np.arange(1, len(file_values))
        return lut[values]


def mask_values(path: str | Path) -> np.ndarray:
    """A mask PNG (L, P or 1; RGB only when grey) -> (H, W) integer values. Raises HighlighterError."""
    p = Path(path)
    try:
        with Image.open(p) as img:
            img.load()
            if img.mode in ("L", "P", "1"):
                arr = np.asarray(img.convert("L") if img.mode == "1" else img)
            elif img.mode in ("RGB", "RGBA"):
                rgb = np.asarray(img)[..., :3]
                if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
                    raise HighlighterError(f"{p}: a colour mask; give a greyscale (L) or palette (P) PNG, 0 for the "
                                           "background, 255 (one object) or label values 1, 2, ... (several)")
                arr = rgb[..., 0]
            else:
                raise HighlighterError(f"{p}: a {img.mode} image; give a greyscale (L) or palette (P) PNG")
    except FileNotFoundError:
        raise HighlighterError(f"{p}: no such mask file") from None
    except UnidentifiedImageError:
        raise HighlighterError(f"{p}: not an image") from None
    except OSError as e:
        raise HighlighterError(f"{p}: cannot read the mask ({str(e).splitlines()[0][:100]})") from None
    return np.asarray(arr, dtype=np.uint8)


def read_first_mask(path: str | Path, shape: tuple[int, int]) -> FirstMask:
    """The first frame's mask, checked against the first frame's (H, W): same size, at least one object, at most
    MAX_OBJECTS label values."""
    arr = mask_values(path)
    H, W = shape[:2]
    if arr.shape != (H, W):
        raise HighlighterError(f"{path}: the mask is {arr.shape[1]}x{arr.shape[0]}, the first frame {W}x{H}; "
                               "they must be the same size")
    values = [int(v) for v in np.unique(arr) if v != 0]
    if not values:
        raise HighlighterError(f"{path}: the mask is empty (all 0); mark the object with 255, or objects with "
                               "label values 1, 2, ...")
    if len(values) > MAX_OBJECTS:
        raise HighlighterError(f"{path}: {len(values)} different values, more than {MAX_OBJECTS} objects; a mask "
                               "is 0 and 255 (one object) or a few label values (is it anti-aliased?)")
    lut = np.zeros(256, np.uint8)
    lut[values] = np.arange(1, len(values) + 1)
    out_values = [0, 255] if len(values) == 1 else [0, *values]
    return FirstMask(lut[arr], out_values, [0, *values])


_NUMBERED = re.compile(r"(.*?)(\d+)")


def check_frames(files: list[Path]) -> list[Path]:
    """The frames in their order. Frames numbered in their names (00000.jpg, frame_0001.png) are put in number
    order (1, 2, ..., 10, not 1, 10, 2) and must follow one another: a missing number is a gap, and a gap is an
    error (the propagation assumes neighbouring frames)."""
    parts = [_NUMBERED.fullmatch(f.stem) for f in files]
    if len(files) < 2 or not all(parts) or len({m.group(1) for m in parts}) != 1:
        return list(files)
    numbered = sorted(zip((int(m.group(2)) for m in parts), files))
    for (a, fa), (b, fb) in zip(numbered, numbered[1:]):
        if b == a:
            raise HighlighterError(f"{fa.parent}: {fa.name} and {fb.name} are both frame {a}")
        if b != a + 1:
            what = f"frame {a + 1} is" if b == a + 2 else f"frames {a + 1} to {b - 1} are"
            raise HighlighterError(f"{fa.parent}: the frames have a gap, {what} missing between {fa.name} and "
                                   f"{fb.name}; tracking needs every frame")
    return [f for _, f in numbered]


class Tracker:
    """A model and one video's context. ``start(frame, first)`` with the first frame (RGB uint8) and its mask;
    ``step(frame)`` returns the next frame's label indices (H, W) uint8 at its size.

    ``short``: the shorter side fed to the model (None: the frame's own), the longer side as ``track_size``."""

    def __init__(self, ck, cfg: PropagationCfg | None = None, device: str = "auto", short: int | None = None,
                 model=None):
        cfg = (cfg or PropagationCfg()).check()
        self.ck, self.cfg, self.short = ck, cfg, short
        self.device = resolve_device(device)
        self.model = model if model is not None else build_attention_model(ck, self.device)
        self.patch = ck.vit.patch_size
        self.shape: tuple[int, int] | None = None
        self.size: tuple[int, int] | None = None
        self.context = LabelPropagation(cfg)

    @torch.no_grad()
    def tokens(self, frame: np.ndarray) -> torch.Tensor:
        """(gh, gw, D) final-norm last-block patch tokens of the frame at the tracking size."""
        x = torch.from_numpy(davis(frame, self.size, self.patch)).to(self.device)
        got: list = []
        self.model(x, tokens=got)
        gh, gw = x.shape[2] // self.patch, x.shape[3] // self.patch
        return got[0][0].float().reshape(gh, gw, -1)

    def start(self, frame: np.ndarray, first: FirstMask) -> None:
        self.shape = frame.shape[:2]
        self.size = track_size(self.shape, self.short)
        tokens = self.tokens(frame)
        grid = label_grid(first.labels, (self.size[0] // self.patch, self.size[1] // self.patch))
        self.context.start(tokens, one_hot(grid, first.num_labels).to(tokens.device))
        self.lost = not grid.any()  # the objects are smaller than a patch at this size

    def soft(self, frame: np.ndarray) -> torch.Tensor:
        if frame.shape[:2] != self.shape:
            raise HighlighterError(f"a frame of {frame.shape[1]}x{frame.shape[0]} after frames of "
                                   f"{self.shape[1]}x{self.shape[0]}; a video's frames must share one size")
        return self.context.step(self.tokens(frame))

    def step(self, frame: np.ndarray) -> np.ndarray:
        return upsample_labels(self.soft(frame).cpu(), self.patch, self.shape)


# ============================================================================= evaluation on DAVIS-style folders
def sequence_folders(paths) -> list[Path]:
    """Each path is a sequence (a folder with frames/ and masks/) or a folder of sequences."""
    out: list[Path] = []
    for p in map(Path, paths):
        if (p / "frames").is_dir():
            out.append(p)
            continue
        found = sorted(c for c in p.iterdir() if (c / "frames").is_dir()) if p.is_dir() else []
        if not found:
            raise HighlighterError(f"{p}: neither a sequence (frames/ and masks/) nor a folder of sequences")
        out.extend(found)
    return out


def load_sequence(folder: Path) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """(frame stems, RGB frames, mask values) of a DAVIS-style folder: frames/ (no gaps) and masks/<stem>.png for
    every frame (a frame may have an empty mask)."""
    from highlighter.images import IMAGE_EXTENSIONS
    from highlighter.video.sources import read_rgb

    files = check_frames(sorted(p for p in (folder / "frames").iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS))
    if len(files) < 3:
        raise HighlighterError(f"{folder}: {len(files)} frames; the DAVIS scores need at least 3 (the first and the "
                               "last are not scored)")
    frames, masks = [], []
    for f in files:
        img = read_rgb(f)
        if img is None:
            raise HighlighterError(f"{f}: cannot decode this frame")
        m = folder / "masks" / f"{f.stem}.png"
        if not m.is_file():
            raise HighlighterError(f"{m}: no such mask; every frame needs its mask")
        values = mask_values(m)
        if values.shape != img.shape[:2]:
            raise HighlighterError(f"{m}: the mask is {values.shape[1]}x{values.shape[0]}, its frame "
                                   f"{img.shape[1]}x{img.shape[0]}")
        frames.append(img)
        masks.append(values)
    return [f.stem for f in files], frames, masks


def davis_scores(preds: list[np.ndarray], gts: list[np.ndarray], num_labels: int) -> dict:
    """J and F per object over the frames DAVIS scores (all but the first and the last), as label indices. Returns
    {"J": mean over objects of the per-frame mean, "F": likewise, "JF": their mean, "per_object": ...}."""
    from highlighter.evaluation import boundary_f, iou

    per_object = []
    for k in range(1, num_labels):
        j = [iou(p == k, g == k) for p, g in zip(preds[1:-1], gts[1:-1])]
        f = [boundary_f(p == k, g == k) for p, g in zip(preds[1:-1], gts[1:-1])]
        per_object.append({"J": float(np.mean(j)), "F": float(np.mean(f))})
    J = float(np.mean([o["J"] for o in per_object]))
    F_ = float(np.mean([o["F"] for o in per_object]))
    return {"J": J, "F": F_, "JF": (J + F_) / 2, "per_object": per_object}


def track_sequence(tracker: Tracker, frames: list[np.ndarray], first: FirstMask, progress=None) -> list[np.ndarray]:
    """Label indices for every frame (the first is the given mask)."""
    tracker.start(frames[0], first)
    out = [first.labels]
    for frame in frames[1:]:
        out.append(tracker.step(frame))
        if progress:
            progress()
    return out


def evaluate_tracking(trackers: dict, folders, progress_bar=None) -> dict:
    """DAVIS J and F per sequence for each method: ``trackers`` maps a name to a ``Tracker``, or to None for the
    baseline that copies the first mask to every frame."""
    result: dict = {"sequences": {}, "mean": {}}
    for folder in sequence_folders(folders):
        names, frames, masks = load_sequence(folder)
        first = read_first_mask(folder / "masks" / f"{names[0]}.png", frames[0].shape)
        gts = [first.labels_of(m) for m in masks]
        row: dict = {"frames": len(frames), "scored_frames": len(frames) - 2, "objects": first.num_labels - 1}
        for method, tracker in trackers.items():
            bar = progress_bar(len(frames) - 1, f"{folder.name} {method}") if progress_bar and tracker else None
            preds = ([first.labels] * len(frames) if tracker is None
                     else track_sequence(tracker, frames, first, bar.update if bar else None))
            if bar:
                bar.close()
            row[method] = davis_scores(preds, gts, first.num_labels)
        result["sequences"][folder.name] = row
    for method in trackers:
        rows = [r[method] for r in result["sequences"].values()]
        result["mean"][method] = {k: float(np.mean([r[k] for r in rows])) for k in ("J", "F", "JF")}
    return result
