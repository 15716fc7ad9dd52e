"""Frame sources: a camera index, a video file, an image folder, or a glob pattern -> RGB frames.

OpenCV reads BGR; frames are turned into RGB here, as they are read, and back to BGR only where they are
written (``to_bgr``), so everything in between is RGB."""

from __future__ import annotations

import glob
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from highlighter.errors import HighlighterError
from highlighter.images import IMAGE_EXTENSIONS

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}


class SourceError(HighlighterError):
    pass


_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10 decodes straight to RGB


def read_rgb(path: str | Path) -> np.ndarray | None:
    """Decode an image file to RGB uint8 (None when OpenCV cannot read it)."""
    if _IMREAD_RGB is not None:
        return cv2.imread(str(path), _IMREAD_RGB)
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if img is None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def to_bgr(rgb: np.ndarray) -> np.ndarray:
    """An RGB picture in OpenCV's channel order, for cv2.imwrite and cv2.VideoWriter."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


@dataclass
class Frame:
    index: int
    image: np.ndarray  # RGB uint8
    name: str  # a stem for output files
    t: float  # when it was read (perf_counter)


class Source:
    """Iterate frames. ``status`` says why the stream ended (or '' while it runs)."""

    description = ""
    status = ""
    total: int | None = None
    frame_shape: tuple[int, int] | None = None  # (H, W) of the frames, when known before the first one

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class VideoSource(Source):
    def __init__(self, spec: str | int, loop: bool = False):
        self.spec, self.loop = spec, loop
        self.is_camera = isinstance(spec, int)
        self.cap = cv2.VideoCapture(spec)
        if not self.cap.isOpened():
            if self.is_camera:
                raise SourceError(f"camera {spec} cannot be opened (not connected, or in use by another program)")
            raise SourceError(f"{spec}: cannot open this video (unsupported or corrupt file)")
        n = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.total = n if n > 0 and not self.is_camera else None
        self.fps = self.cap.get(cv2.CAP_PROP_FPS) or 25.0
        h, w = int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.frame_shape = (h, w) if h > 0 and w > 0 else None
        self.description = f"camera {spec}" if self.is_camera else Path(str(spec)).name

    def __iter__(self):
        i = 0
        stem = "frame" if self.is_camera else Path(str(self.spec)).stem
        while True:
            ok, img = self.cap.read()
            if not ok or img is None:
                if self.is_camera:
                    self.status = f"camera {self.spec} stopped sending frames (unplugged?)"
                    return
                if self.total and i < self.total - 1 and not self.loop:
                    self.status = f"{self.description}: the video ended early at frame {i} of {self.total} " \
                                  "(truncated or corrupt?)"
                    return
                if self.loop and i > 0:
                    self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    ok, img = self.cap.read()
                    if not ok:
                        self.status = f"{self.description}: cannot rewind the video"
                        return
                else:
                    self.status = f"{self.description}: end of video ({i} frames)"
                    return
            yield Frame(i, cv2.cvtColor(img, cv2.COLOR_BGR2RGB), f"{stem}_{i:06d}", time.perf_counter())
            i += 1

    def close(self) -> None:
        self.cap.release()


class ImageSequence(Source):
    def __init__(self, files: list[Path], description: str, loop: bool = False):
        if not files:
            raise SourceError(f"{description}: no images found")
        self.files, self.description, self.loop, self.total = files, description, loop, len(files)
        self.skipped: list[str] = []
        first = next((img for img in map(read_rgb, files[:5]) if img is not None), None)
        self.frame_shape = first.shape[:2] if first is not None else None

    def __iter__(self):
        i = 0
        while True:
            for path in self.files:
                img = read_rgb(path)
                if img is None:
                    self.skipped.append(str(path))
                    continue
                yield Frame(i, img, path.stem, time.perf_counter())
                i += 1
            if not self.loop or i == 0:
                break
        self.status = f"{self.description}: end of images ({i} frames" + (
            f", {len(self.skipped)} unreadable skipped)" if self.skipped else ")")


def open_source(spec: str | int, loop: bool = False) -> Source:
    """A camera index (``0``), a video file, a folder of images, or a glob pattern (``frames/*.jpg``)."""
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return VideoSource(int(spec), loop=False)
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        return ImageSequence(files, str(path), loop)
    if any(c in str(spec) for c in "*?["):
        files = sorted(Path(p) for p in glob.glob(str(spec)) if Path(p).suffix.lower() in IMAGE_EXTENSIONS)
        return ImageSequence(files, str(spec), loop)
    if not path.exists():
        raise SourceError(f"{spec}: no such file, folder or camera")
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return ImageSequence([path], str(path), loop)
    return VideoSource(str(path), loop)


def list_cameras(max_index: int = 5) -> list[int]:
    """The camera indices that open (quietly; none on a machine without /dev/video*)."""
    found = []
    for i in range(max_index):
        if not Path(f"/dev/video{i}").exists() and Path("/dev").exists():
            continue
        cap = cv2.VideoCapture(i)
        if cap.isOpened():
            found.append(i)
        cap.release()
    return found
