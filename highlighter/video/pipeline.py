"""The one road from a picture to its mask, shared by the Photos and Live tabs, `attention`, `video`, `eval` and
`bench live`: picture -> predictor (its preprocessing, the model) -> fused map and mask on the patch grid -> overlay
on the whole picture (``FramePipeline.process`` -> ``FrameResult``); and, for streams, latest-frame-wins threading
(``LiveRunner``)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from highlighter.defaults import MASK_RULE, MASS, OVERLAY
from highlighter.features import PCABasis, cosine_similarity_to, fit_pca, pca_rgb_foreground
from highlighter.postprocess import fuse, heads_or_all, largest_box, threshold_maps, tokencut_mask
from highlighter.render import draw_box, overlay, similarity_overlay
from highlighter.runtime.base import Predictor
from highlighter.video.smoothing import Smoother


@dataclass
class Settings:
    threshold: float | None = MASS  # the rule's parameter (None: its default); DINO's: the attention mass kept
    rule: str = MASK_RULE  # mass, percentile, absolute (on the fused map) or tokencut (on the patch keys)
    heads: int | tuple[int, ...] | None = None  # the heads fused (one int: that head); None: the mean of all
    overlay: str = OVERLAY
    smoothing: bool = False
    box: bool = False  # draw the box of the mask's largest connected component
    pca_background: bool = False  # the pca overlay: remove the background (DINOv2 demo: first component cut)
    pca_threshold: float = 0.5  # ... where the first component, scaled to [0, 1], is above this
    pca_flip: bool = False  # ... below it instead
    keep_features: bool = False  # keep each frame's patch tokens and keys with its result (Live's click-to-compare)
    draw: bool = True  # False: no overlay (FrameResult.overlay None), for callers that draw their own or none


@dataclass
class FrameResult:
    """What the road hands on for one picture (a photo or a frame). The arrays on the patch grid are the settings'
    (``fused``, ``mask``); the methods give the maps and masks for other heads and rules from the same attention,
    with no model call (the Photos tab re-thresholds with them, `attention` writes them)."""

    index: int
    name: str
    frame: np.ndarray  # RGB, the whole picture as it came: the overlay is drawn on it, boxes are in its pixels
    attention: np.ndarray  # (heads, h, w)
    fused: np.ndarray  # (h, w)
    mask: np.ndarray  # (h, w) bool
    overlay: np.ndarray | None  # RGB, the whole frame; None with ``Settings(draw=False)``
    timings: dict = field(default_factory=dict)  # preprocess_ms, model_ms, post_ms, latency_ms
    box: list[int] | None = None  # [x0, y0, x1, y1] of the mask's largest component, in the frame's pixels
    pca: np.ndarray | None = None  # (h, w, 3) in [0, 1], in the pca overlay with a predictor that gives tokens
    tokens: np.ndarray | None = None  # (h*w, D) output patch tokens, kept with ``Settings.keep_features``
    keys: np.ndarray | None = None  # (h*w, D) last-block patch keys, likewise
    similarity: np.ndarray | None = None  # (h, w): cosine to the pipeline's reference, when one is set
    heads_used: tuple[int, ...] | None = None  # the heads fused (None: all; a head this model lacks falls back)
    compare: FrameResult | None = None  # the same frame through a second model (``FramePipeline.second``)
    track: np.ndarray | None = None  # (H, W) bool: the tracked object's mask (``FramePipeline.tracker``)
    patch_size: int = 16

    @property
    def shown_mask(self) -> np.ndarray:
        """The mask the overlay shows: the tracked object's while one is tracked, else the attention mask."""
        return self.track if self.track is not None else self.mask

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self.attention.shape[1:])

    @property
    def image(self) -> np.ndarray:
        """The picture the maps are drawn on (the whole frame)."""
        return self.frame

    def fused_map(self, heads=None) -> np.ndarray:
        """The mean of the chosen heads' maps (all by default; one int: that head), (h, w)."""
        return fuse(self.attention, heads)

    def masks(self, rule: str = MASK_RULE, threshold: float | None = None) -> np.ndarray:
        """Each head's mask under a rule, bool (heads, h, w)."""
        return threshold_maps(self.attention, rule, threshold).astype(bool)

    def fused_mask(self, rule: str = MASK_RULE, threshold: float | None = None, heads=None) -> np.ndarray:
        """The fused map's mask under a rule, bool (h, w); ``tokencut`` needs the keys (``keep_features``)."""
        if rule == "tokencut":
            if self.keys is None:
                raise ValueError("the tokencut rule needs the patch keys: keep them (Settings(keep_features=True))")
            return tokencut_mask(self.keys, self.grid, self.fused_map(heads))
        return threshold_maps(self.fused_map(heads), rule, threshold).astype(bool)

    def box_of(self, mask: np.ndarray) -> list[int] | None:
        """[x0, y0, x1, y1] of a grid mask's largest connected component in the frame's pixels (the whole
        frame was resized to the grid: nothing is cropped); None for an empty mask."""
        return largest_box(mask, self.frame.shape[:2])


def _no_drawing(*_args) -> None:
    return None


PCA_FIT_FRAMES = 5  # the pca overlay's basis is fitted on this many first frames, then kept


class FramePipeline:
    def __init__(self, predictor: Predictor, settings: Settings | None = None):
        self.predictor = predictor
        self.settings = settings or Settings()
        self.smoother = Smoother()
        self.pca_basis: PCABasis | None = None
        self.pca_fitted_on = 0  # how many frames the basis was fitted on
        self._pca_frames: list[np.ndarray] = []
        self._refit = False
        self.reference: tuple[str, np.ndarray] | None = None  # ("tokens" | "keys", (D,)): the similarity overlay
        self.second: FramePipeline | None = None  # a second model run on each frame too, with the same settings
        # what the user picked, followed frame after frame: an object with ``step(tokens, grid, size)`` -> (H, W)
        # bool mask or None (``video.live_track.LiveTracker``; not imported here: it needs torch)
        self.tracker = None

    def refit_pca(self) -> None:
        """Fit the PCA basis afresh on the next frames (it is otherwise kept, so the colours do not flicker).
        Any thread may ask; the frame's thread does it, on the next pca frame."""
        self._refit = True

    def pca_colours(self, tokens: np.ndarray, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(colours (h, w, 3) in [0, 1], the patches shown (h, w)): the basis is fitted jointly on the first
        PCA_FIT_FRAMES frames' tokens, then fixed."""
        if self._refit:
            self._refit, self._pca_frames, self.pca_basis, self.pca_fitted_on = False, [], None, 0
        if self.pca_basis is None or len(self._pca_frames) < PCA_FIT_FRAMES:
            self._pca_frames.append(tokens)
            self.pca_basis = fit_pca(self._pca_frames)  # the basis, then its count: a reader never sees it early
            self.pca_fitted_on = len(self._pca_frames)
        s, basis = self.settings, self.pca_basis
        if s.pca_background:
            return pca_rgb_foreground(tokens, grid, s.pca_threshold, s.pca_flip, basis)
        return basis.rgb(tokens, grid), np.ones(grid, bool)

    def heads_for(self, attention: np.ndarray):
        """The settings' heads, or None (all, fused) when this model lacks one of them (a second model with
        fewer heads than the first)."""
        return heads_or_all(self.settings.heads, attention.shape[0])

    def masks_from(self, attention: np.ndarray, keys: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        s = self.settings
        fused = fuse(attention, self.heads_for(attention))
        if s.rule == "tokencut":
            if keys is None:
                raise ValueError(f"the tokencut rule needs the patch keys, which {self.predictor.name} does not give")
            return fused, tokencut_mask(keys, fused.shape, fused)
        if s.smoothing and s.rule == "mass":
            return self.smoother(fused, MASS if s.threshold is None else s.threshold)
        return fused, threshold_maps(fused, s.rule, s.threshold).astype(bool)

    def process(self, frame, index: int = 0, name: str = "", t_read: float | None = None) -> FrameResult:
        s = self.settings
        predictor, reference, tracker = self.predictor, self.reference, self.tracker  # each read once: other
        # threads may set them
        want_tokens = (s.overlay == "pca" or tracker is not None) and getattr(predictor, "supports_tokens", False)
        want_keys = s.keep_features or reference is not None or s.rule == "tokencut"
        if want_keys and getattr(predictor, "supports_keys", False):
            pred = predictor(frame, tokens=True, keys=True)
        else:
            pred = predictor(frame, tokens=True) if want_tokens else predictor(frame)
        t = time.perf_counter()
        fused, mask = self.masks_from(pred.attention, pred.keys)
        box = largest_box(mask, frame.shape[:2])  # the frame is resized whole (no crop): the grid covers it
        colours = similarity = track = None
        if tracker is not None and pred.tokens is not None:  # the propagation counts in the frame's time
            track = tracker.step(pred.tokens, mask.shape, frame.shape[:2])
            if track is not None:
                box = largest_box(track)  # the Box checkbox boxes what is shown
        t_track = time.perf_counter()
        feats = {"tokens": pred.tokens, "keys": pred.keys}.get(reference[0]) if reference is not None else None
        draw = overlay if s.draw else _no_drawing
        if track is not None:
            drawn = draw("mask", frame, fused, track)
        elif feats is not None and feats.shape[1] == reference[1].shape[0]:
            similarity = cosine_similarity_to(feats, reference[1], mask.shape)
            drawn = similarity_overlay(frame, similarity) if s.draw else None
        elif s.overlay == "pca" and pred.tokens is not None:
            colours, shown = self.pca_colours(pred.tokens, mask.shape)
            drawn = draw("pca", frame, colours, shown)
        else:
            drawn = draw(s.overlay, frame, fused, mask)
        if s.box and drawn is not None:
            drawn = draw_box(drawn, box)
        now = time.perf_counter()
        timings = {"preprocess_ms": pred.preprocess_ms, "model_ms": pred.model_ms, "post_ms": (now - t) * 1e3}
        if tracker is not None:
            timings["track_ms"] = (t_track - t) * 1e3
        if t_read is not None:
            timings["latency_ms"] = (now - t_read) * 1e3
        kept = s.keep_features or reference is not None
        result = FrameResult(index, name, frame, pred.attention, fused, mask, drawn, timings, box, colours,
                             pred.tokens if kept else None, pred.keys if kept else None, similarity,
                             self.heads_for(pred.attention), track=track, patch_size=predictor.patch_size)
        second = self.second
        if second is not None:  # one frame = both models: the fps counts the pair
            result.compare = second.process(frame, index, name, t_read)
        return result


class LatestSlot:
    """Holds at most one item: ``put`` replaces what is there (and counts it as dropped). Never a queue."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item = None
        self._closed = False
        self.dropped = 0
        self.max_len = 0

    def put(self, item) -> None:
        with self._cond:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self.max_len = max(self.max_len, 1)
            self._cond.notify()

    def get(self, timeout: float | None = None):
        with self._cond:
            if not self._cond.wait_for(lambda: self._item is not None or self._closed, timeout):
                return None
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        return 0 if self._item is None else 1


class StreamEnd(Enum):
    """Why a stream stopped without being asked to: what a caller branches on (never the status text)."""

    ENDED = "ended"  # a file or folder ran out (without loop)
    CAMERA_LOST = "camera lost"  # a camera stopped sending frames: worth trying again
    SOURCE_FAILED = "source failed"
    INFERENCE_FAILED = "inference failed"


class LiveRunner:
    """A capture thread and an inference thread joined by a LatestSlot: latency stays at about one model
    step whatever the source's rate. ``on_result(FrameResult)`` and ``on_status(str)`` are called from the
    inference / capture threads; ``paced`` plays files at their own frame rate."""

    def __init__(self, source, pipeline: FramePipeline, on_result, on_status=lambda s: None, paced_fps: float = 0.0):
        self.source, self.pipeline = source, pipeline
        self.on_result, self.on_status, self.paced_fps = on_result, on_status, paced_fps
        self.end: StreamEnd | None = None  # why the stream stopped by itself (set before on_status is called)
        self.slot = LatestSlot()
        self._stop = threading.Event()
        self.paused = threading.Event()
        self.frames_read = self.frames_done = 0
        self.error: str | None = None
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._capture, name="capture", daemon=True),
                         threading.Thread(target=self._infer, name="inference", daemon=True)]
        for t in self._threads:
            t.start()

    def _capture(self) -> None:
        period = 1.0 / self.paced_fps if self.paced_fps else 0.0
        next_t = time.perf_counter()
        try:
            for frame in self.source:
                if self._stop.is_set():
                    break
                while self.paused.is_set() and not self._stop.is_set():
                    time.sleep(0.02)
                self.frames_read += 1
                self.slot.put(frame)
                if period:
                    next_t += period
                    time.sleep(max(0.0, next_t - time.perf_counter()))
            if not self._stop.is_set():
                if self.end is None:  # a model that failed meanwhile is the reason that stays
                    self.end = StreamEnd.CAMERA_LOST if getattr(self.source, "is_camera", False) else StreamEnd.ENDED
                self.on_status(self.source.status or "the source ended")
        except Exception as e:  # noqa: BLE001 - a broken source becomes a status, never a crash
            self.error = f"{type(e).__name__}: {e}"
            self.end = StreamEnd.SOURCE_FAILED
            self.on_status(f"source failed: {self.error}")
        finally:
            self.slot.close()

    def _infer(self) -> None:
        while not self._stop.is_set():
            frame = self.slot.get(timeout=0.1)
            if frame is None:
                if self.slot._closed:
                    return
                continue
            try:
                res = self.pipeline.process(frame.image, frame.index, frame.name, frame.t)
            except Exception as e:  # noqa: BLE001
                self.error = f"{type(e).__name__}: {e}"
                self.end = StreamEnd.INFERENCE_FAILED
                self.on_status(f"inference failed: {self.error}")
                return
            self.frames_done += 1
            self.on_result(res)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.slot.close()
        for t in self._threads:
            t.join(timeout)
        self.source.close()

    def join(self, timeout: float | None = None) -> None:
        for t in self._threads:
            t.join(timeout)
