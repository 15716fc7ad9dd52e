"""What the app's tabs share, without Qt: the model, the threshold, the heads, the overlay mode and the image
size (and the newest live frame). Tabs subscribe to the events instead of reaching into each other through
the main window; the window persists the values. Callbacks run in the thread that changed the value (the
GUI thread, in the app).

    state = AppState()
    state.threshold_changed.connect(on_threshold)   # on_threshold(0.42)
    state.set_threshold(0.42)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from highlighter.defaults import IMAGE_SIZE, MASS, OVERLAY
from highlighter.render import OVERLAYS


class Signal:
    """A list of callbacks: ``connect``, ``disconnect``, ``emit(*args)`` (psygnal's shape, no dependency)."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[..., Any]] = []

    def connect(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        if callback not in self._callbacks:
            self._callbacks.append(callback)
        return callback

    def disconnect(self, callback: Callable[..., Any] | None = None) -> None:
        """Remove one callback (all of them with no argument)."""
        if callback is None:
            self._callbacks.clear()
        elif callback in self._callbacks:
            self._callbacks.remove(callback)

    def emit(self, *args: Any) -> None:
        for callback in list(self._callbacks):
            callback(*args)

    def __len__(self) -> int:
        return len(self._callbacks)


class AppState:
    """The shared settings of the Live and Photos tabs, each with a ``<name>_changed`` event that fires only
    when the value really changes."""

    def __init__(self, threshold: float = MASS, overlay: str = OVERLAY, image_size: int = IMAGE_SIZE,
                 heads: Sequence[int] | None = None):
        self.engine = None  # runtime.predictor.photo_predictor: the model of Live and Photos (the Photos road's)
        self.model_spec: str | None = None
        self.threshold = MASS
        self.overlay = "mask"
        self.image_size = IMAGE_SIZE  # the shorter side fed to the model, aspect kept
        self.heads: tuple[int, ...] | None = None  # None: the mean of all heads
        self.latest_frame = None  # the newest RGB frame the Live tab showed (for the MAE tab)
        self.model_changed = Signal()  # (engine)
        self.threshold_changed = Signal()  # (float)
        self.overlay_changed = Signal()  # (str)
        self.image_size_changed = Signal()  # (int)
        self.heads_changed = Signal()  # (tuple | None)
        self.model_requested = Signal()  # (path, kind): "Use this model" from the Train tab; kind dino or mae
        self.compare_engine = None  # a second model shown next to the first ("Compare with…"), or None
        self.compare_spec: str | None = None
        self.compare_changed = Signal()  # (engine or None)
        self.set_threshold(threshold)
        self.set_overlay(overlay)
        self.set_image_size(image_size)
        self.set_heads(heads)

    @property
    def ck(self):
        return self.engine.ck if self.engine is not None else None

    def set_model(self, spec: str, engine) -> None:
        self.model_spec, self.engine = spec, engine
        if self.heads and max(self.heads) >= engine.num_heads:
            self.set_heads(None)
        self.model_changed.emit(engine)

    def set_compare(self, spec: str | None, engine) -> None:
        """Show a second model's maps next to the first's in Live and Photos (None, None: stop comparing)."""
        self.compare_spec, self.compare_engine = (spec, engine) if engine is not None else (None, None)
        self.compare_changed.emit(self.compare_engine)

    def set_threshold(self, value: float) -> None:
        value = float(value)
        if not 0.0 < value <= 1.0:
            raise ValueError(f"the threshold is a fraction of the attention mass in (0, 1], got {value}")
        if value != self.threshold:
            self.threshold = value
            self.threshold_changed.emit(value)

    def set_overlay(self, name: str) -> None:
        if name not in OVERLAYS:
            raise ValueError(f"unknown overlay {name!r}; choose from {', '.join(OVERLAYS)}")
        if name != self.overlay:
            self.overlay = name
            self.overlay_changed.emit(name)

    def set_image_size(self, short: int) -> None:
        short = int(short)
        if short < 16:
            raise ValueError(f"image size {short} is too small")
        if short != self.image_size:
            self.image_size = short
            self.image_size_changed.emit(short)

    def set_heads(self, heads: Sequence[int] | None) -> None:
        heads = tuple(int(h) for h in heads) if heads else None
        if heads != self.heads:
            self.heads = heads
            self.heads_changed.emit(heads)

    def request_model(self, path: str, kind: str = "dino") -> None:
        self.model_requested.emit(path, kind)
