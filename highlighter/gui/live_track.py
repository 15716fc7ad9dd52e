"""Live: track what the user points at. With "Track" on, a click on the view picks the connected region of
patches similar to the clicked one, and a drag picks the patches inside its box; from then on the stream's
inference thread propagates each new frame's mask from that pick (``video.live_track.LiveTracker``, set as
``FramePipeline.tracker``), until Clear. The picking reads the shown frame's kept patch tokens: no model call."""

from __future__ import annotations

from PySide6.QtWidgets import QCheckBox, QDoubleSpinBox, QHBoxLayout, QLabel, QWidget

from highlighter.defaults import TRACK_CLICK_SIMILARITY
from highlighter.gui.qt_util import fit, rgb_to_pixmap


class TrackControls(QWidget):
    """The "Track" checkbox and the click's similarity threshold, and what a click, a box and Clear do to the
    Live tab ``tab`` (its view, status line, pipeline and the shown result ``tab.shown``)."""

    def __init__(self, tab):
        super().__init__()
        self.tab = tab
        self.tracker = None  # the LiveTracker handed to the pipeline, None when nothing is tracked
        self.box = QCheckBox("Track")
        self.box.setToolTip("click the object (the connected patches similar to the clicked one) or drag a box "
                            "around it: its mask then follows it, frame after frame, until Clear (torch only)")
        self.box.toggled.connect(self._toggled)
        self.similarity = QDoubleSpinBox(minimum=-1.0, maximum=1.0, singleStep=0.05, decimals=2,
                                         value=TRACK_CLICK_SIMILARITY)
        self.similarity.setToolTip("a click picks the 4-connected patches whose output token is at least this "
                                   "cosine-similar to the clicked patch's")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        for w in (self.box, QLabel("click picks similarity ≥"), self.similarity):
            lay.addWidget(w)
        view = tab.view
        view.boxed.connect(self.boxed)
        view.missed.connect(self.missed)

    @property
    def on(self) -> bool:
        return self.box.isChecked()

    def _toggled(self, on: bool) -> None:
        tab = self.tab
        tab.view.drags = on
        if on and tab.compare_box.isChecked():
            tab.compare_box.setChecked(False)  # one meaning per click
        tab.settings.keep_features = on or tab.compare_box.isChecked()
        if on:
            tab._ensure_tokens()
            tab.status.setText("Track: click the object, or drag a box around it")
        else:
            self.clear()

    # ------------------------------------------------------------------ picking
    def _frame(self):
        """The shown result with its patch tokens, or None after saying why there is none."""
        tab = self.tab
        res = getattr(tab, "shown", None)
        if res is None:
            tab.status.setText("Track: no frame to pick from yet; Start a stream (a video file, an image folder "
                               "or a camera), then click the object or drag a box around it")
            return None
        if tab.runner is None:
            tab.status.setText("Track: the stream is stopped; Start it, then click the object or drag a box around "
                               "it")
            return None
        if res.tokens is None:
            tab._ensure_tokens()
            name = tab.pipeline.predictor.name if getattr(tab, "pipeline", None) is not None else "the backend"
            paused = tab.runner.paused.is_set()
            tab.status.setText(f"Track: this frame's patch tokens were not kept ({name}); tracking needs them, "
                               "and they are kept from the next frames on: "
                               + ("resume the stream for a frame, then click again" if paused else "click again"))
            return None
        return res

    def missed(self) -> None:
        if self.on:
            if getattr(self.tab, "shown", None) is None:
                self._frame()
            else:
                self.tab.status.setText("Track: click or drag on the picture itself")

    def clicked(self, x: float, y: float) -> None:
        from highlighter.video.live_track import SelectionError, select_click

        res = self._frame()
        if res is None:
            return
        h, w = res.mask.shape
        H, W = res.frame.shape[:2]
        x = x - W if x >= W else x  # the side overlay: its right half is the same frame
        i, j = min(int(y * h / H), h - 1), min(int(x * w / W), w - 1)
        threshold = self.similarity.value()
        try:
            selection = select_click(res.tokens, (h, w), i * w + j, threshold)
        except SelectionError as e:
            self.tab.status.setText(f"Track: {e}")
            return
        self._start(res, selection, f"the click on patch ({i}, {j}): the connected patches at least "
                                    f"{threshold:.2f} cosine-similar to it")

    def boxed(self, x0: float, y0: float, x1: float, y1: float) -> None:
        from highlighter.video.live_track import SelectionError, select_box

        if not self.on:
            return
        res = self._frame()
        if res is None:
            return
        W = res.frame.shape[1]
        if min(x0, x1) >= W:  # drawn on the side overlay's right half: the same frame
            x0, x1 = x0 - W, x1 - W
        x0, x1 = min(x0, W), min(x1, W)
        try:
            selection = select_box([x0, y0, x1, y1], res.mask.shape, res.frame.shape)
        except SelectionError as e:
            self.tab.status.setText(f"Track: {e}")
            return
        self._start(res, selection, f"the box {round(min(x0, x1))},{round(min(y0, y1))} to "
                                    f"{round(max(x0, x1))},{round(max(y0, y1))}: the patches centred inside")

    def _start(self, res, selection, how: str) -> None:
        from highlighter.render import overlay
        from highlighter.video.live_track import LiveTracker

        tab = self.tab
        self.tracker = LiveTracker(res.tokens, res.mask.shape, selection, tab.pipeline.predictor.patch_size)
        tab.pipeline.tracker = self.tracker  # the inference thread propagates from its next frame
        tab.pipeline.reference = None
        picture = overlay("mask", res.frame, res.fused, selection)
        tab.view.setPixmap(fit(rgb_to_pixmap(picture), tab.view.width(), tab.view.height()))
        tab.view.picture_size = picture.shape[:2]
        tab.clear_sim.setEnabled(True)
        tab.status.setText(f"Tracking {self.tracker.patches} patches of frame {res.index}, picked by {how}; each "
                           "new frame's mask is propagated from them. Clear stops")

    # ------------------------------------------------------------------ ending
    def clear(self) -> None:
        """Stop tracking (Clear, Track off): the normal overlay from the next frame."""
        pipe = getattr(self.tab, "pipeline", None)
        if pipe is not None:
            pipe.tracker = None
        if self.tracker is not None:
            self.tracker = None
            self.tab.clear_sim.setEnabled(self.tab.pick is not None)
            self.tab.status.setText(f"tracking cleared: back to the {self.tab.settings.overlay} overlay")

    def stream_started(self) -> None:
        """A new stream (another source, size or model) has a new pipeline: the pick was on the old one's grid."""
        if self.tracker is not None:
            self.clear()
            self.tab.status.setText(self.tab.status.text() + " (the stream restarted: pick the object again)")
