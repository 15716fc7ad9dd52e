"""The MAE tab: original, masked input, reconstruction, and reconstruction + visible, as large as the space
allows (one row, or two by two)."""

from __future__ import annotations

import numpy as np
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from highlighter.errors import HighlighterError
from highlighter.gui.qt_util import FitGrid, Job, rgb_to_pixmap
from highlighter.images import load_rgb
from highlighter.paths import default_checkpoint_or_none

PANELS = ("original", "masked input (click a patch to hide or show it)", "reconstruction (visible patches dimmed)",
          "reconstruction + visible")
RECONSTRUCTION_TIP = ("What the decoder outputs for every patch. The loss only scores the hidden patches, so "
                      "its output for the visible ones is never trained and looks like coloured noise: they are "
                      "dimmed here. The last panel pastes the real visible patches back.")
FITS = (("squash", "Squash to square (as the MAE notebook)"), ("crop", "Centre crop"))


class MaeTab(QWidget):
    def __init__(self, main):
        super().__init__()
        self.main = main
        self.engine = None
        self.image: Image.Image | None = None
        self.mask: np.ndarray | None = None
        self.result = None
        self.seed = 0
        self.last_error: str | None = None  # the last model that could not be used, and why
        self.job = Job(self._show, self._failed)
        self.model_job = Job(self._model_loaded, self._model_failed)
        self.setAcceptDrops(True)

        open_btn, grab, model_btn = QPushButton("Open photo…"), QPushButton("Use live frame"), \
            QPushButton("Open MAE checkpoint…")
        open_btn.clicked.connect(self._open)
        grab.clicked.connect(self.grab_live)
        model_btn.clicked.connect(self._open_model)
        self.ratio = QSlider(Qt.Orientation.Horizontal, minimum=0, maximum=95)
        self.ratio.setValue(75)
        self.ratio.valueChanged.connect(self._new_ratio)
        self.ratio_label = QLabel("Hidden: 75%")
        new_mask = QPushButton("New random mask")
        new_mask.clicked.connect(self.new_mask)
        self.model_label = QLabel()
        self.banner = QLabel()
        self.banner.setWordWrap(True)
        self.banner.setStyleSheet("background: #fff4d6; color: #5a4300; padding: 6px; border-radius: 4px;")
        self.banner.hide()
        self.fit = QComboBox()
        for key, text in FITS:
            self.fit.addItem(text, key)
        self.fit.setToolTip("The model's input is square. The notebook squeezes the whole photo into it; a centre "
                            "crop keeps proportions and loses the sides.")
        self.fit.currentIndexChanged.connect(self._new_fit)
        self.panels = FitGrid()  # the four panels, in one row or two by two, whichever shows them larger
        self.views = [self.panels.add(title) for title in PANELS]
        self.views[1].clicked.connect(self.toggle_patch)
        self.views[2].setToolTip(RECONSTRUCTION_TIP)
        self.note = QLabel("Open a photo, or take the current Live frame.")
        self.note.setWordWrap(True)
        top = QHBoxLayout()
        for w in (open_btn, grab, self.fit, self.ratio_label, self.ratio, new_mask, model_btn):
            top.addWidget(w)
        top.setStretch(4, 1)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.model_label)
        lay.addWidget(self.banner)
        lay.addWidget(self.panels, 1)
        lay.addWidget(self.note)
        main.state.model_requested.connect(self._model_requested)
        self.destroyed.connect(lambda *_, s=main.state, cb=self._model_requested: s.model_requested.disconnect(cb))
        main.when_model_ready(self._load_default)  # a quick start streams first: torch loads once

    def _load_default(self) -> None:
        if self.engine is None and not self.model_job.busy:  # unless a model was opened here meanwhile
            self.load_model(None)

    def _model_requested(self, path: str, kind: str) -> None:
        if kind == "mae":
            self.load_model(path)

    # ------------------------------------------------------------------ model
    def load_model(self, path: str | None) -> None:
        def load():
            from highlighter.core.formats import load_checkpoint, random_mae_checkpoint
            from highlighter.core.inference import MAEEngine

            default = default_checkpoint_or_none("mae")  # models/, or $HIGHLIGHTER_MODELS
            if path:
                ck = load_checkpoint(path)
            elif default:
                ck = load_checkpoint(default)
            else:
                ck = random_mae_checkpoint()
            return MAEEngine(ck, "cpu")  # a file without an MAE decoder is refused, saying why

        self.model_job.start(load)

    def _model_loaded(self, engine) -> None:
        self.engine = engine
        ck = engine.ck
        where = f"{ck.name} ({ck.source})" if ck.path else ck.source
        self.model_label.setText(f"MAE model: {ck.vit.describe()}, {where}")
        warn = []
        if not ck.path:
            warn.append("No trained MAE model was found in models/: this is an untrained network, so the "
                        "reconstructions are noise. Open an MAE checkpoint to see real ones.")
        if engine.norm_pix:
            warn.append("This checkpoint predicts per-patch normalised pixels: hidden patches are shown with the "
                        "mean and spread of their nearest visible patches, not their true colours.")
        self.banner.setText("\n".join(warn))
        self.banner.setVisible(bool(warn))
        self.mask = None
        self.run()

    def _model_failed(self, message: str) -> None:
        """The previous model stays, and so does its banner: the failure is a dialog and a status line."""
        self.main.statusBar().showMessage("could not use that MAE checkpoint; kept the previous model", 8000)
        self.last_error = message
        if not self.main.quiet:
            QMessageBox.warning(self, "Cannot use this MAE checkpoint", message)

    def _open_model(self):
        path, _ = QFileDialog.getOpenFileName(self, "MAE checkpoint", "", "Checkpoints (*.pth *.pt *.safetensors "
                                              "*.bin);;All files (*)")
        if path:
            self.load_model(path)

    # ------------------------------------------------------------------ input
    def _open(self):
        path, _ = QFileDialog.getOpenFileName(self, "Photo", "", "Images (*.jpg *.jpeg *.png *.bmp *.webp *.tif)")
        if path:
            try:
                self.set_image(load_rgb(path))
            except HighlighterError as e:
                QMessageBox.warning(self, "Cannot read this photo", str(e))

    def dragEnterEvent(self, event):  # noqa: N802 - Qt's name
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event):  # noqa: N802
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            try:
                self.set_image(load_rgb(paths[0]))
            except HighlighterError as e:
                self.note.setText(str(e))
        event.acceptProposedAction()

    def grab_live(self) -> None:
        frame = self.main.state.latest_frame
        if frame is None:
            self.note.setText("The Live tab has no frame yet: start it first.")
            return
        self.set_image(Image.fromarray(frame))

    def set_image(self, img: Image.Image) -> None:
        self.image, self.mask = img, None
        self.run()

    # ------------------------------------------------------------------ masks
    def _new_fit(self, *_) -> None:
        self.mask = None
        self.run()

    def _new_ratio(self, v: int) -> None:
        self.ratio_label.setText(f"Hidden: {v}%")
        self.mask = None
        self.run()

    def new_mask(self) -> None:
        self.seed += 1
        self.mask = None
        self.run()

    def toggle_patch(self, u: float, v: float) -> None:
        if self.result is None or self.engine is None:
            return
        g = self.engine.ck.vit.pos_grid
        i = int(v * g) * g + int(u * g)
        mask = self.result.mask.copy()
        mask[i] = 1 - mask[i]
        if mask.all():
            self.note.setText("At least one patch must stay visible.")
            return
        self.mask = mask
        self.run()

    def run(self) -> None:
        if self.engine is None or self.image is None:
            return
        engine, img, ratio, seed, mask = self.engine, self.image, self.ratio.value() / 100.0, self.seed, self.mask
        fit = self.fit.currentData()
        if not self.job.start(lambda: engine.run(img, ratio, seed, mask, fit=fit)):
            self._again = True

    def _show(self, res) -> None:
        from highlighter.core.mae import to_display
        from highlighter.render import dim_cells

        self.result = res
        v = res.views
        g = int(round(res.mask.size ** 0.5))  # the input is square: a g x g grid of patches
        shown = [to_display(v.original), to_display(v.masked),
                 dim_cells(to_display(v.reconstruction), (1 - res.mask).reshape(g, g)), to_display(v.paste)]
        for view, arr in zip(self.views, shown):
            view.set_source(rgb_to_pixmap(arr))
        self.note.setText(f"{int(res.mask.sum())} of {res.mask.size} patches hidden "
                          f"({res.mask.mean():.0%}); {v.note}.")
        if getattr(self, "_again", False):
            self._again = False
            self.run()

    def _failed(self, message: str) -> None:
        self.note.setText(message)
