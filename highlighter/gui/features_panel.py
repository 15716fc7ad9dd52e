"""What the patch features show, in the Photos and Live tabs: the DINOv2-style PCA picture with its background
controls, and (Photos) the similarity of every patch to a clicked one, with the best matches in the other photos.

Everything here draws from results already computed (``AttentionResult.tokens`` / ``.keys``): no model call."""

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
