"""``highlighter track``: the first frame's mask propagated through a video or a folder of frames (DINO's label
propagation); writes every frame's mask and an overlay video, or nothing at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from tqdm import tqdm

from highlighter.commands.common import info, report_model, resolve_checkpoint
from highlighter.core.formats import load_checkpoint
from highlighter.core.propagation import PropagationCfg
from highlighter.errors import HighlighterError
from highlighter.render import labels_overlay
from highlighter.video.sources import ImageSequence, open_source
from highlighter.video.track import Tracker, check_frames, read_first_mask
from highlighter.video.writer import Recorder, Writer


def propagation_cfg(args) -> PropagationCfg:
    try:
        return PropagationCfg(args.n_last, args.neighbourhood, args.topk, args.temperature).check()
    except ValueError as e:
        raise HighlighterError(str(e)) from None


def _write_png(path: Path, values) -> None:
    import cv2

    if not cv2.imwrite(str(path), values):
        raise HighlighterError(f"cannot write {path}")


class Unreadable(HighlighterError):
    pass


def frames_of(source):
    """The source's frames; a folder's frame that cannot be decoded ends the run (tracking needs every frame)."""
    skipped = getattr(source, "skipped", [])
    for frame in source:
        if skipped:
            raise Unreadable(f"{skipped[0]}: cannot decode this frame; tracking needs every frame")
        yield frame
    if skipped:
        raise Unreadable(f"{skipped[0]}: cannot decode this frame; tracking needs every frame")


def run(args) -> int:
    cfg = propagation_cfg(args)
    source = open_source(args.input)
    try:
        return _track(args, cfg, source)
    finally:
        source.close()


def _track(args, cfg: PropagationCfg, source) -> int:
    # ---- everything is checked before anything is written
    if isinstance(source, ImageSequence):
        source.files = check_frames(source.files)
    frames = frames_of(source)
    first = next(frames, None)
    if first is None:
        raise HighlighterError(source.status or f"{args.input}: no frames")
    first_mask = read_first_mask(args.first_mask, first.image.shape)
    ck = load_checkpoint(resolve_checkpoint(args.checkpoint, "attention"), num_heads=args.num_heads)
    report_model(ck)
    tracker = Tracker(ck, cfg, args.device, args.image_size)
    tracker.start(first.image, first_mask)
    H, W = tracker.size
    info(f"tracking {first_mask.num_labels - 1} object(s) at {W}x{H} (patch grid {W // tracker.patch}x"
         f"{H // tracker.patch}); context: the first frame and the last {cfg.n_last}, neighbourhood "
         f"{cfg.neighbourhood}, top-{cfg.topk}, temperature {cfg.temperature}")
    if tracker.lost:
        raise HighlighterError(f"{args.first_mask}: the object is smaller than one {tracker.patch}-pixel patch at "
                               f"{W}x{H}; give a larger --size")

    # ---- written into a folder of its own inside DIR, moved into place only when every frame is done
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise HighlighterError(f"--out {out}: a file is in the way; give a folder")
    new_dirs = [p for p in [out, *out.parents] if not p.exists()]
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".track-", dir=out))
    (stage / "masks").mkdir()
    fps = getattr(source, "fps", 0) or args.fps
    recorder = Recorder(stage / "overlay.mp4", fps)
    writer = Writer(max_pending=16)
    names: list[str] = []
    used: set[str] = set()
    bar = tqdm(total=source.total, unit="frame", disable=None)
    ok = False
    try:
        recorder.open((first.image.shape[1], first.image.shape[0]))
        for i, frame in enumerate(_chain(first, frames)):
            labels = first_mask.labels if i == 0 else tracker.step(frame.image)
            name = frame.name if frame.name not in used else f"{frame.name}_{frame.index:06d}"
            used.add(name)
            names.append(name)
            writer.submit(_write_png, stage / "masks" / f"{name}.png", first_mask.to_values(labels))
            writer.submit(recorder.write, labels_overlay(frame.image, labels))
            bar.update(1)
        writer.submit(recorder.close)
        writer.close()
        if writer.error:
            raise HighlighterError(f"writing to {out} failed: {writer.error}")
        if "early" in source.status or "failed" in source.status:
            raise HighlighterError(source.status)
        (out / "masks").mkdir(exist_ok=True)
        for name in names:
            os.replace(stage / "masks" / f"{name}.png", out / "masks" / f"{name}.png")
        os.replace(stage / "overlay.mp4", out / "overlay.mp4")
        ok = True
    finally:
        bar.close()
        writer.close()
        recorder.close()
        shutil.rmtree(stage, ignore_errors=True)
        if not ok:
            for d in new_dirs:  # innermost first; only folders this run made, and only when empty
                try:
                    d.rmdir()
                except OSError:
                    break
    info(f"wrote {len(names)} masks to {out / 'masks'} and {out / 'overlay.mp4'}")
    return 0


def _chain(first, rest):
    yield first
    yield from rest
