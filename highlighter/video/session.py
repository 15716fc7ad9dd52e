"""The live stream's decisions, without Qt: what the Live tab and ``highlighter video`` share.

- ``StreamKey``: what a stream's predictor and backend choice are kept under (the model and the input size; a
  quick start's exported graph until the model has loaded).
- ``open_stream``: a source opened, with its frames' size.
- ``graph_predictor``: a quick start's predictor on the exported graph, before torch is imported.
- ``first_predictor``: the safe backend a stream starts on (torch fp32, from the model already built), and the
  choice kept on disk for this model and size, if any.
- ``choose``: the backend choice (kept on disk, or measured on the bundled clip or the given frames).
``highlighter video`` prints the same ``Choice`` line for its own choice.
- ``Choice``: a choice's outcome as data (backend, why, where it came from, its age), and the line that says so.
- ``second_pipeline``: the second model's pipeline, at the stream's size for its own patch size.
- ``tokens_predictor``: torch fp32 in place of a backend without patch tokens (PCA, tracking, click-to-compare).
- ``export_graph``: the streamed model file's graph at this size, for the next quick start.
- ``photo_road``: the same road for photos (the Photos tab, `attention`, `eval`): torch fp32, each photo at its own
  size, visualize_attention.py's resize by default.

The tab keeps the widgets, the jobs that run these off the GUI thread, and the signals.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import Enum

from highlighter.defaults import LIVE_PREPROCESSING, PHOTO_PREPROCESSING
from highlighter.preprocess import fit_size
from highlighter.runtime import graphs
from highlighter.video.sources import open_source


@dataclass(frozen=True)
class StreamKey:
    """``model``: the loaded model's identity, or ``GRAPH`` while a quick start streams on the model file's
    exported graph; ``size``: the model input (H, W); ``preprocessing``: how frames are resized to it."""

    model: int | str
    size: tuple[int, int]
    preprocessing: str = LIVE_PREPROCESSING

    GRAPH = "graph"

    @property
    def on_graph(self) -> bool:
        return self.model == self.GRAPH

    @classmethod
    def for_model(cls, ck, size, preprocessing: str = LIVE_PREPROCESSING) -> StreamKey:
        return cls(id(ck), tuple(size), preprocessing)

    @classmethod
    def for_graph(cls, size, preprocessing: str = LIVE_PREPROCESSING) -> StreamKey:
        return cls(cls.GRAPH, tuple(size), preprocessing)


class Origin(Enum):
    """Where a stream's backend came from."""

    PENDING = "pending"  # not chosen yet: the safe backend streams meanwhile
    CACHED = "cached"  # a choice kept on disk for this model, size, machine and versions
    MEASURED = "measured"  # measured now (and kept)


@dataclass
class Choice:
    """A backend choice for one stream: what the status line and ``--quit-after`` report."""

    backend: str
    size: tuple[int, int]
    origin: Origin
    report: dict

    def line(self, description: str, earlier: str = "an earlier start") -> str:
        from highlighter.runtime.predictor import choice_age

        H, W = self.size
        entry = self.report.get(self.report.get("chosen", ""), {})
        if entry.get("agrees") == "maps":  # near-flat maps: the masks' boundary moves, the maps are the same
            why = (f"the fastest whose maps agree with fp32, r {entry.get('map_r', 1.0):.4f}; its masks differ on "
                   f"near-flat maps, IoU {entry.get('mean_iou', 1.0):.3f}")
        else:
            why = f"the fastest whose masks agree with fp32, IoU {entry.get('mean_iou', 1.0):.3f}"
        if self.origin is Origin.CACHED:
            how = f"chosen on {earlier}, {choice_age(self.report)}"
        elif self.report.get("kept", True):
            how = "measured now, kept"
        else:
            how = "measured now, not kept: the model file changed after it was loaded"
        return f"{description}: backend {self.backend} at {H}x{W} ({why}; {how})"


def open_stream(spec: str, loop: bool = True):
    """(the opened source, its frames' (H, W)); raises when it cannot be opened or has no frames."""
    source = open_source(spec, loop=loop)
    shape = source.frame_shape
    if shape is None:
        first = next(iter(source), None)
        if first is None:
            source.close()
            raise RuntimeError(f"{spec}: no frames")
        shape = first.image.shape
    return source, tuple(shape[:2])


def graph_predictor(model: str, short: int, shape, preprocessing: str = LIVE_PREPROCESSING):
    """A quick start's (graph, predictor): ONNX Runtime fp32 on the graph exported from this model file for this
    size (the same model: its masks match torch fp32's), or (None, None) when there is none or it does not load.
    Imports no torch."""
    from highlighter.runtime.ort import OrtPredictor

    graph = graphs.find(model, short, shape)
    if graph is None:
        return None, None
    try:
        predictor = OrtPredictor(graph.onnx, graph.patch_size, "ort-fp32", preprocessing=preprocessing)
    except Exception:  # noqa: BLE001 - a damaged graph, an older ONNX Runtime: the model road will do
        return None, None
    return graph, predictor


def first_predictor(ck, model, shape, short: int, predictors: dict, preprocessing: str = LIVE_PREPROCESSING):
    """(key, predictor, kept choice or None) a stream on ``ck`` starts with: the predictor already chosen for this
    model and size, else torch fp32 on the model already built (no export, no measuring) and the choice kept on
    disk, if any (a file read)."""
    size = fit_size(shape[:2], short, ck.vit.patch_size)
    key = StreamKey.for_model(ck, size, preprocessing)
    predictor = predictors.get(key)
    if predictor is not None:
        return key, predictor, None
    from highlighter.runtime.predictor import TorchPredictor, cached_choice

    return key, TorchPredictor(ck, size, "fp32", model=model, preprocessing=preprocessing), cached_choice(ck, size)


def choose(ck, key: StreamKey, frames, cancel: threading.Event | None = None, repeats: int = 2,
           forget: bool = False):
    """The fastest agreeing backend for this stream: kept on disk, or measured on ``frames()``; ``forget``: the
    kept choice is dropped first (it ran far from its recorded time). Returns (key, predictor, Choice)."""
    from highlighter.runtime.predictor import auto_predictor, forget_choice

    if forget:
        forget_choice(ck, key.size)

    predictor, report, cached = auto_predictor(ck, key.size, frames, repeats=repeats, log=lambda m: None,
                                               cancel=cancel, preprocessing=key.preprocessing)
    return key, predictor, Choice(predictor.name, tuple(predictor.image_size),
                                  Origin.CACHED if cached else Origin.MEASURED, report)


def clip_frames(spec: str, n: int = 3):
    """The first ``n`` frames of ``spec`` (the backends are compared on them)."""
    clip = open_source(spec)
    try:
        return [f.image for _, f in zip(range(n), clip)]
    finally:
        clip.close()


def second_pipeline(engine, first_size: tuple[int, int], short: int, settings,
                    preprocessing: str = LIVE_PREPROCESSING):
    """The second model's pipeline: torch fp32 at the first stream's picture size fitted to its own patch size,
    with the first stream's preprocessing and the same settings object (threshold, heads, overlay)."""
    from highlighter.runtime.predictor import TorchPredictor
    from highlighter.video.pipeline import FramePipeline

    size = fit_size(first_size, short, engine.ck.vit.patch_size)
    return FramePipeline(TorchPredictor(engine.ck, size, "fp32", model=engine.model, preprocessing=preprocessing),
                         settings)


def tokens_predictor(ck, predictor, model=None):
    """Torch fp32 at ``predictor``'s size and preprocessing: what a stream swaps in when it needs the patch tokens
    that an ONNX graph does not give. ``model``: an ``AttentionViT`` of ``ck`` to share."""
    from highlighter.runtime.predictor import TorchPredictor

    return TorchPredictor(ck, predictor.image_size, "fp32", model=model, preprocessing=predictor.preprocessing)


def export_graph(ck, size: tuple[int, int]) -> bool:
    """Export (once, cached) the graph of ``ck``'s file at ``size`` and record it, so that the next start streams
    before torch is imported (``runtime.graphs``). False, doing nothing, for a model not from a file or from one
    rewritten since it was loaded (a run still training: the graph would hold the loaded weights under the new
    content's name)."""
    from highlighter.runtime.predictor import file_unchanged, onnx_for

    if not ck.path or not file_unchanged(ck):
        return False
    onnx_for(ck, size, log=lambda m: None)  # a file that exists is only recorded in the index
    return True


def photo_road(ck, device: str = "auto", image_size=None, preprocessing: str = PHOTO_PREPROCESSING, settings=None,
               model=None):
    """A ``FramePipeline`` for photos of any size: ``image_size`` None (the default size) or S, each photo's shorter
    side, its aspect kept; (H, W): every photo resized to exactly that, rounded down to the patch. ``model``: an
    ``AttentionViT`` of ``ck`` already built, whose backbone is shared."""
    from highlighter.runtime.predictor import TorchPredictor, photo_predictor
    from highlighter.video.pipeline import FramePipeline

    p = ck.vit.patch_size
    if isinstance(image_size, (tuple, list)):
        H, W = image_size
        size = max(p, H - H % p), max(p, W - W % p)
        predictor = TorchPredictor(ck, size, "fp32", device, model=model, preprocessing=preprocessing)
    else:
        predictor = photo_predictor(ck, device, image_size, preprocessing, model=model)
    return FramePipeline(predictor, settings)
