"""What the patch features show, in the Photos and Live tabs: the DINOv2-style PCA picture with its background
controls, and (Photos) the similarity of every patch to a clicked one, with the best matches in the other photos.

Everything here draws from results already computed (``FrameResult.tokens`` / ``.keys``): no model call."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QPushButton, QSlider, QVBoxLayout, QWidget

from highlighter.features import pca_rgb, pca_rgb_foreground
from highlighter.gui.qt_util import fit, rgb_to_pixmap
from highlighter.results import pca_picture


class PCAControls(QWidget):
    """The DINOv2 demo's background removal (cut the first component at a threshold, or flip it) and, in Live,
    "Refit" (the basis is otherwise kept from the first frames). ``changed`` fires on every change."""

    changed = Signal()
    refit = Signal()

    def __init__(self, with_refit: bool = False, parent=None):
        super().__init__(parent)
        self.background = QCheckBox("Remove background")
        self.background.setToolTip("PCA: keep the patches whose first component is above the threshold "
                                   "(DINOv2's demo), black out the rest")
        self.threshold = QSlider(Qt.Orientation.Horizontal, minimum=0, maximum=100, value=50)
        self.threshold.setMaximumWidth(120)
        self.threshold_label = QLabel()
        self.flip = QCheckBox("Flip")
        self.flip.setToolTip("keep the patches below the threshold instead (the first component's sign is arbitrary)")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        for w in (self.background, self.threshold_label, self.threshold, self.flip):
            lay.addWidget(w)
        self.refit_btn = None
        if with_refit:
            self.refit_btn = QPushButton("Refit PCA")
            self.refit_btn.setToolTip("fit the PCA colours afresh on the next frames")
            self.refit_btn.clicked.connect(self.refit.emit)
            lay.addWidget(self.refit_btn)
        self.background.toggled.connect(self._changed)
        self.threshold.valueChanged.connect(self._changed)
        self.flip.toggled.connect(self._changed)
        self._changed()

    def _changed(self, *_) -> None:
        on = self.background.isChecked()
        self.threshold.setEnabled(on)
        self.flip.setEnabled(on)
        self.threshold_label.setText(f"cut {self.value():.2f}")
        self.changed.emit()

    def value(self) -> float:
        return self.threshold.value() / 100.0


class PCAPanel(QWidget):
    """Photos: the PCA picture of the shown photo's last-block output patch tokens, with ``PCAControls``."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.title = QLabel("PCA of patch features")
        self.view = QLabel()
        self.view.setMinimumSize(240, 220)
        self.view.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.controls = PCAControls()
        self.controls.changed.connect(self.redraw)
        self.result = None
        self.colours: np.ndarray | None = None  # (h, w, 3) in [0, 1]: what is shown
        self.shown_patches: np.ndarray | None = None  # (h, w) bool: the patches kept (all without bg removal)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.title)
        lay.addWidget(self.view, 1)
        lay.addWidget(self.controls)

    def show_result(self, res) -> None:
        self.result = res
        self.redraw()

    def redraw(self, *_) -> None:
        res = self.result
        if res is None or res.tokens is None:
            self.colours = self.shown_patches = None
            self.view.setText("no patch tokens for this result")
            return
        c = self.controls
        if c.background.isChecked():
            self.colours, self.shown_patches = pca_rgb_foreground(res.tokens, res.grid, c.value(), c.flip.isChecked())
        else:
            self.colours, self.shown_patches = pca_rgb(res.tokens, res.grid), np.ones(res.grid, bool)
        self.view.setPixmap(fit(rgb_to_pixmap(pca_picture(self.colours, res.patch_size)), self.view.width(),
                                self.view.height()))


FEATURE_KINDS = {"output tokens": "tokens", "last-block keys": "keys"}


class _ClickView(QLabel):
    """A QLabel showing a picture scaled to fit (centred); a click reports the point in the picture's pixels.

    With ``drags`` on, a click is reported on release, and a press dragged more than DRAG_MIN pixels draws a
    rubber band and reports the box instead (``boxed``, in the picture's pixels, clamped to it); a click or
    drag where no picture is shown reports ``missed``."""

    clicked = Signal(float, float)  # x, y in the picture's pixels
    boxed = Signal(float, float, float, float)  # x0, y0, x1, y1 in the picture's pixels
    missed = Signal()
    DRAG_MIN = 6

    def __init__(self):
        super().__init__()
        self.picture_size: tuple[int, int] | None = None  # (H, W) of the picture shown
        self.drags = False
        self._press = None
        self._band = None
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setCursor(Qt.CursorShape.CrossCursor)

    def show_picture(self, rgb: np.ndarray) -> None:
        self.picture_size = rgb.shape[:2]
        self.setPixmap(fit(rgb_to_pixmap(rgb), self.width(), self.height()))

    def to_picture(self, x: float, y: float, clamp: bool = False) -> tuple[float, float] | None:
        pix = self.pixmap()
        if self.picture_size is None or pix is None or pix.isNull():
            return None
        pw, ph = pix.width(), pix.height()
        x0, y0 = (self.width() - pw) / 2, (self.height() - ph) / 2
        u, v = (x - x0) / pw, (y - y0) / ph
        if clamp:
            u, v = min(max(u, 0.0), 1.0), min(max(v, 0.0), 1.0)
        elif not (0 <= u < 1 and 0 <= v < 1):
            return None
        H, W = self.picture_size
        return u * W, v * H

    def mousePressEvent(self, event):  # noqa: N802 - Qt's name
        x, y = event.position().x(), event.position().y()
        if self.drags:
            self._press = (x, y)
            return
        p = self.to_picture(x, y)
        if p is not None:
            self.clicked.emit(*p)

    def mouseMoveEvent(self, event):  # noqa: N802 - Qt's name
        if self._press is None:
            return
        from PySide6.QtCore import QRect
        from PySide6.QtWidgets import QRubberBand

        if self._band is None:
            self._band = QRubberBand(QRubberBand.Shape.Rectangle, self)
        x0, y0 = self._press
        self._band.setGeometry(QRect(round(x0), round(y0), round(event.position().x() - x0),
                                     round(event.position().y() - y0)).normalized())
        self._band.show()

    def mouseReleaseEvent(self, event):  # noqa: N802 - Qt's name
        if self._press is None:
            return
        (x0, y0), x1, y1 = self._press, event.position().x(), event.position().y()
        self._press = None
        if self._band is not None:
            self._band.hide()
        if max(abs(x1 - x0), abs(y1 - y0)) < self.DRAG_MIN:
            p = self.to_picture(x1, y1)
            self.clicked.emit(*p) if p is not None else self.missed.emit()
            return
        a, b = self.to_picture(x0, y0, clamp=True), self.to_picture(x1, y1, clamp=True)
        self.boxed.emit(*a, *b) if a is not None else self.missed.emit()


class SimilarityPanel(QWidget):
    """Photos: click a patch of the photo; every patch's cosine similarity to it (output tokens or last-block
    keys), and the best-matching patch in each other photo whose features are cached. The click also picks an
    object: the 4-connected patches at least ``threshold`` similar to the clicked one (outlined); each other
    photo shows its matches, every patch's nearest-neighbour similarity to the object's patches as a heatmap,
    outlined where it reaches the threshold. Never runs the model."""

    def __init__(self, parent=None):
        from PySide6.QtWidgets import QComboBox, QDoubleSpinBox

        from highlighter.defaults import TRACK_CLICK_SIMILARITY

        super().__init__(parent)
        self.kind = QComboBox()
        self.kind.addItems(list(FEATURE_KINDS))
        self.kind.setToolTip("which features the similarity compares")
        self.kind.currentTextChanged.connect(lambda *_: self.redraw())
        self.threshold = QDoubleSpinBox(minimum=-1.0, maximum=1.0, singleStep=0.05, decimals=2,
                                        value=TRACK_CLICK_SIMILARITY)
        self.threshold.setToolTip("the object a click picks: the connected patches at least this similar to the "
                                  "clicked one; in the other photos, the patches this similar to one of them")
        self.threshold.valueChanged.connect(lambda *_: self.redraw())
        self.view = _ClickView()
        self.view.setMinimumSize(240, 220)
        self.view.clicked.connect(self._clicked)
        self.matches_view = QLabel()
        self.matches_view.setMinimumHeight(90)
        self.matches_text = QLabel("Click a patch of the photo")
        self.matches_text.setWordWrap(True)
        self.result, self.others = None, {}
        self.index: int | None = None  # the clicked patch, row-major on the grid
        self.similarity: np.ndarray | None = None  # (h, w): what the view shows
        self.matches: list[tuple[str, int, float]] = []  # (photo, patch index, cosine)
        self.region: np.ndarray | None = None  # (h, w) bool: the object the click picked
        self.match_maps: dict[str, np.ndarray] = {}  # photo -> (h, w) nearest-neighbour similarity to the object
        top, second = QHBoxLayout(), QHBoxLayout()  # two rows: one would widen the Photos tab past 1400 px
        top.addWidget(QLabel("Patch similarity"))
        top.addWidget(self.kind)
        top.addStretch(1)
        second.addWidget(QLabel("object ≥"))
        second.addWidget(self.threshold)
        second.addStretch(1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addLayout(second)
        lay.addWidget(self.view, 1)
        lay.addWidget(self.matches_text)
        lay.addWidget(self.matches_view)

    def features(self, res) -> np.ndarray | None:
        return getattr(res, FEATURE_KINDS[self.kind.currentText()])

    def set_result(self, res, others: dict) -> None:
        """The shown photo's result and the other photos' cached results ({name: FrameResult})."""
        if res is not self.result:
            self.index = None
        self.result, self.others = res, others
        self.redraw()

    def _clicked(self, x: float, y: float) -> None:
        res = self.result
        if res is None:
            return
        (h, w), (H, W) = res.grid, res.image.shape[:2]  # the grid covers the whole picture
        self.click_patch(min(int(y * h / H), h - 1) * w + min(int(x * w / W), w - 1))

    def click_patch(self, index: int) -> None:
        self.index = index
        self.redraw()

    def redraw(self) -> None:
        from highlighter.features import best_matches, cosine_similarity_map, region_match, similar_region
        from highlighter.render import draw_box, overlay, patch_box, side_by_side, similarity_overlay

        res = self.result
        if res is None:
            return
        feats = self.features(res)
        if self.index is None or feats is None:
            self.similarity, self.matches, self.region, self.match_maps = None, [], None, {}
            self.view.show_picture(res.image)
            self.matches_text.setText("Click a patch of the photo" if feats is not None
                                      else "no cached features of this kind for this photo")
            self.matches_view.clear()
            return
        h, w = res.grid
        i, j = divmod(self.index, w)
        t = self.threshold.value()
        self.similarity = cosine_similarity_map(feats, self.index, res.grid)
        self.region = similar_region(feats, self.index, res.grid, t)
        picked = similarity_overlay(res.image, self.similarity, patch_box(self.index, res.grid, res.image.shape))
        self.view.show_picture(overlay("contour", picked, None, self.region))
        others = [(name, o, self.features(o)) for name, o in self.others.items() if self.features(o) is not None
                  and self.features(o).shape[1] == feats.shape[1]]
        found = best_matches(feats[self.index], [f for _, _, f in others], k=1)
        self.matches = [(name, m[0][0], m[0][1]) for (name, _, _), m in zip(others, found)]
        self.match_maps = {name: region_match(feats[self.region.ravel()], f, o.grid) for name, o, f in others}
        panels, captions = [], []
        for (name, o, _), (_, idx, sim) in zip(others, self.matches):
            m = self.match_maps[name]
            small = _height(o.image, 160)  # drawn at the strip's height: the box and the outline stay visible
            drawn = overlay("contour", similarity_overlay(small, m), None, m >= t)
            panels.append(draw_box(drawn, patch_box(idx, o.grid, small.shape)))
            captions.append(f"{name}: {sim:.2f}, object {int((m >= t).sum())} patches")
        kind = self.kind.currentText()
        self.matches_text.setText(f"patch ({i}, {j}), object {int(self.region.sum())} patches (similarity >= {t:.2f}),"
                                  f" {kind}: " + ("; ".join(captions) if captions else "no other photo analysed yet"))
        if panels:
            strip = side_by_side(panels, captions)
            self.matches_view.setPixmap(fit(rgb_to_pixmap(strip), max(self.matches_view.width(), 300), 110))
        else:
            self.matches_view.clear()


def _height(rgb: np.ndarray, height: int) -> np.ndarray:
    import cv2

    H, W = rgb.shape[:2]
    return cv2.resize(rgb, (max(1, round(W * height / H)), height), interpolation=cv2.INTER_AREA)
