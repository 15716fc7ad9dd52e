"""Writing what the live road produces, off the caller's thread: mask PNGs, the overlay as an mp4, and snapshots
(frame, mask, overlay). `highlighter video` and the Live tab's Record and Snapshot both use it. Frames come in
RGB; they become BGR here, for OpenCV, and nowhere else on the way out.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from highlighter.errors import HighlighterError
from highlighter.postprocess import mask_png
from highlighter.video.sources import to_bgr


def write_mask(path: str | Path, mask: np.ndarray, shape: tuple[int, int]) -> Path:
    """A patch-grid mask as a 0/255 PNG at the frame's (H, W)."""
    cv2.imwrite(str(path), mask_png(mask, shape[:2]))
    return Path(path)


def snapshot_paths(folder: str | Path, index: int = 0) -> list[Path]:
    """Where a snapshot of frame ``index`` goes: <time>-<index>_frame.png, _mask.png and _overlay.png."""
    stem = time.strftime("%Y%m%d-%H%M%S") + f"-{index:05d}"
    return [Path(folder) / f"{stem}_{what}.png" for what in ("frame", "mask", "overlay")]


def write_snapshot(paths: list[Path], frame: np.ndarray, mask: np.ndarray, overlay: np.ndarray) -> list[Path]:
    """The frame, its mask (0/255 at the frame's size) and the overlay, as PNG files (see ``snapshot_paths``)."""
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(paths[0]), to_bgr(frame))
    write_mask(paths[1], mask, frame.shape[:2])
    cv2.imwrite(str(paths[2]), to_bgr(overlay))
    return paths


class Recorder:
    """An mp4 of RGB frames. The size is fixed when it opens (``size`` (W, H), or the first frame's); other
    frames are resized to it. ``open`` raises HighlighterError when no encoder can write the file.

    ``write(rgb, t)`` with ``t`` (seconds since the first frame) keeps real time: an mp4 has one frame rate, so
    a frame is repeated until the file reaches ``t``, and a frame that arrives before the file's next slot is
    skipped. Without ``t`` every frame is written once (the CLI, which writes every frame of a file)."""

    def __init__(self, path: str | Path, fps: float = 25.0, size: tuple[int, int] | None = None):
        self.path, self.fps, self.size = Path(path), float(fps), size
        self._out: cv2.VideoWriter | None = None
        self.frames = 0

    def open(self, size: tuple[int, int] | None = None) -> Recorder:
        self.size = size or self.size
        if self.size is None:
            raise ValueError("the recording's size is not known yet")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._out = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.size)
        if not self._out.isOpened():
            raise HighlighterError(f"cannot write {self.path} (no mp4 encoder in this OpenCV build?)")
        return self

    def write(self, rgb: np.ndarray, t: float | None = None) -> None:
        if self._out is None:
            self.open((rgb.shape[1], rgb.shape[0]))
        repeats = 1 if t is None else int(t * self.fps + 0.5) + 1 - self.frames  # slots up to and including t
        if repeats <= 0:
            return
        W, H = self.size
        if rgb.shape[:2] != (H, W):
            rgb = cv2.resize(rgb, (W, H), interpolation=cv2.INTER_AREA)
        bgr = to_bgr(rgb)
        for _ in range(repeats):
            self._out.write(bgr)
        self.frames += repeats

    @property
    def duration(self) -> float:
        """Seconds of video written so far."""
        return self.frames / self.fps

    def close(self) -> None:
        if self._out is not None:
            self._out.release()
            self._out = None


class Writer:
    """One background thread that runs file writes in the order they were submitted.

    ``submit(fn, *args)`` queues a call. With ``block=True`` (the CLI) it waits while ``max_pending`` calls are
    queued, so the writes keep pace; with ``block=False`` (the GUI) a full queue drops the call and counts it
    in ``dropped``, so the caller never waits. The first error is kept in ``error`` and passed to
    ``on_error(message)``; later calls still run."""

    def __init__(self, max_pending: int = 32, on_error: Callable[[str], None] | None = None, name: str = "writer"):
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self.on_error = on_error
        self.error: str | None = None
        self.dropped = self.done = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable, *args, block: bool = True, on_done: Callable | None = None) -> bool:
        """Queue ``fn(*args)``; ``on_done(result)`` runs on the writer thread after it. False when dropped."""
        try:
            self._queue.put((fn, args, on_done), block=block)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                self._queue.task_done()
                return
            fn, args, on_done = item
            try:
                result = fn(*args)
                if on_done is not None:
                    on_done(result)
            except Exception as e:  # noqa: BLE001 - a full disk must not stop the stream; it is reported
                message = str(e) if isinstance(e, HighlighterError) else f"{type(e).__name__}: {e}"
                if self.error is None:
                    self.error = message
                if self.on_error is not None:
                    self.on_error(message)
            finally:
                self.done += 1
                self._queue.task_done()

    def flush(self) -> None:
        """Wait until everything submitted so far is written."""
        self._queue.join()

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
