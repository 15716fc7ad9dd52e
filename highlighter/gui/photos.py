"""The Photos tab: drop photos or folders, see per-head and fused heatmaps and the overlay, save them all.

The overlay mode, heads, mass kept and resolution are the app state's, shared with the Live tab, so both
tabs draw the same mask in the same way for the same picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from highlighter.errors import ImageError
from highlighter.gui.controls import StateControls
from highlighter.gui.features_panel import PCAPanel, SimilarityPanel
from highlighter.gui.qt_util import Job, fit, rgb_to_pixmap
from highlighter.images import expand_inputs, load_rgb
from highlighter.preprocess import fit_size
from highlighter.render import heatmap, overlay


class PhotosTab(QWidget):
    def __init__(self, main):
        super().__init__()
        self.main = main
        self.state = state = main.state
        self.setAcceptDrops(True)
        self.photos: dict[str, object] = {}  # path -> PIL image
        self.cache: dict[tuple, object] = {}  # (path, model id, image size) -> AttentionResult
        self.model_calls = 0
        self.current: str | None = None
        self.job = Job(self._show_result, self._failed)
        self.load_job = Job(self._loaded, self._failed)

        open_btn, self.save_btn = QPushButton("Open…"), QPushButton("Save all…")
        open_btn.clicked.connect(self._open)
        self.save_btn.clicked.connect(self._save_all)
        self.controls = StateControls(state)
        self.threshold, self.threshold_label = self.controls.threshold, self.controls.threshold_label
        self.gallery = QListWidget()
        self.gallery.setViewMode(QListWidget.ViewMode.IconMode)
        self.gallery.setIconSize(QSize(96, 96))
        self.gallery.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.gallery.setMinimumWidth(240)
        self.gallery.currentItemChanged.connect(self._select)
        self.unreadable = QListWidget()
        self.unreadable.setMaximumHeight(90)
        self.unreadable.setToolTip("files that could not be read, with the reason")
        self.hint = QLabel("Drop photos or folders here, or use Open…")
        self.hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.fused_view, self.mask_view = QLabel(), QLabel()
        self.heads = QWidget()
        self.heads_grid = QGridLayout(self.heads)
        self.head_views: list[QLabel] = []

        top = QHBoxLayout()
        for w in (open_btn, self.save_btn, self.controls):
            top.addWidget(w)
        top.setStretch(2, 1)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.addWidget(self.gallery, 1)
        ll.addWidget(QLabel("Unreadable files:"))
        ll.addWidget(self.unreadable)
        right = QWidget()
        rl = QVBoxLayout(right)
        big = QHBoxLayout()
        for title, view in (("Overlay", self.mask_view), ("Fused heatmap", self.fused_view)):
            box = QVBoxLayout()
            box.addWidget(QLabel(title))
            view.setMinimumSize(300, 220)
            view.setAlignment(Qt.AlignmentFlag.AlignCenter)
            box.addWidget(view, 1)
            big.addLayout(box)
        self._add_feature_panels(big)
        rl.addWidget(self.hint)
        rl.addLayout(big, 2)
        rl.addWidget(QLabel("Per-head heatmaps"))
        rl.addWidget(self.heads, 1)
        split = QSplitter()
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(1, 3)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(split, 1)
        subs = [(state.threshold_changed, self._rethreshold), (state.overlay_changed, self._rethreshold),
                (state.heads_changed, self._redraw), (state.image_size_changed, self.refresh),
                (state.model_changed, self.refresh)]
        for signal, callback in subs:
            signal.connect(callback)
        self.destroyed.connect(lambda *_: [signal.disconnect(callback) for signal, callback in subs])

    # ------------------------------------------------------------------ input
    def dragEnterEvent(self, event):  # noqa: N802 - Qt's name
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event):  # noqa: N802
        self.add_paths([u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()])
        event.acceptProposedAction()

    def _open(self):
        paths, _ = QFileDialog.getOpenFileNames(self, "Photos", "", "Images (*.jpg *.jpeg *.png *.bmp *.webp *.tif "
                                                "*.tiff);;All files (*)")
        self.add_paths(paths)

    def add_paths(self, paths: list[str]) -> None:
        files, problems = expand_inputs(paths)

        def load():
            ok, bad = [], list(problems)
            for f in files:
                try:
                    ok.append((str(f), load_rgb(f)))
                except ImageError as e:
                    bad.append(str(e))
            return ok, bad

        if not self.load_job.start(load):
            self.main.statusBar().showMessage("still loading the previous photos…", 3000)

    def _loaded(self, result) -> None:
        ok, bad = result
        for msg in bad:
            self.unreadable.addItem(msg)
        for path, img in ok:
            if path in self.photos:
                continue
            self.photos[path] = img
            thumb = img.copy()
            thumb.thumbnail((96, 96))
            item = QListWidgetItem(QIcon(rgb_to_pixmap(np.asarray(thumb))), Path(path).name)
            item.setData(Qt.ItemDataRole.UserRole, path)
            self.gallery.addItem(item)
        if ok and self.gallery.currentItem() is None:
            self.gallery.setCurrentRow(0)
        self.main.statusBar().showMessage(f"{len(ok)} photo(s) added" + (f", {len(bad)} unreadable" if bad else ""),
                                          5000)

    # ------------------------------------------------------------------ results
    def _select(self, item, _prev=None) -> None:
        if item is None:
            return
        self.current = item.data(Qt.ItemDataRole.UserRole)
        self.refresh()

    def _size(self, img) -> tuple[int, int]:
        """The model input for this photo: its shorter side at the state's image size, as in Live."""
        return fit_size((img.height, img.width), self.state.image_size, self.state.ck.vit.patch_size)

    def _key(self, path: str) -> tuple:
        return path, id(self.state.engine), self.state.image_size

    def refresh(self, *_) -> None:
        if self.current is None or self.state.engine is None:
            return
        key = self._key(self.current)
        if key in self.cache:
            self._show_result((key, self.cache[key]))
            return
        engine, img = self.state.engine, self.photos[self.current]
        size = self._size(img)

        def run():
            self.model_calls += 1
            return key, engine.run(img, size, keys=True, tokens=True)  # for PCA and similarity, same pass

        if not self.job.start(run):
            self._again = True

    def _show_result(self, result) -> None:
        key, res = result
        self.cache[key] = res
        if getattr(self, "_again", False):  # the selection or the size changed while the model ran
            self._again = False
            self.refresh()
        if key != self._key(self.current):
            return
        self.hint.hide()
        self._redraw()

    def _redraw(self, *_) -> None:
        res = self.current_result()
        if res is None:
            return
        p = res.patch_size
        self.fused_view.setPixmap(fit(rgb_to_pixmap(heatmap(res.fused(self.state.heads), p)),
                                      self.fused_view.width(), self.fused_view.height()))
        for v in self.head_views:
            v.deleteLater()
        self.head_views = []
        n = res.attention.shape[0]
        cols = min(6, n)
        for h in range(n):
            cell = QWidget()
            box = QVBoxLayout(cell)
            box.setContentsMargins(2, 2, 2, 2)
            box.addWidget(QLabel(f"head {h}"))
            img = QLabel()
            img.setPixmap(fit(rgb_to_pixmap(heatmap(res.attention[h], p)), 150, 110))
            box.addWidget(img)
            box.addStretch(1)  # caption and image stay together at the top of the cell
            self.heads_grid.addWidget(cell, h // cols, h % cols)
            self.head_views.append(cell)
        self.pca_panel.show_result(res)
        self.sim_panel.set_result(res, self.other_results())
        self._rethreshold()

    def current_result(self):
        if self.current is None or self.state.engine is None:
            return None
        return self.cache.get(self._key(self.current))

    def _rethreshold(self, *_) -> None:
        """Re-threshold from the cached attention and redraw the overlay: no model call."""
        res = self.current_result()
        if res is None:
            return
        s = self.state
        self.current_mask = res.fused_mask("mass", s.threshold, s.heads)
        if s.overlay == "pca" and self.pca_panel.colours is not None:  # the PCA panel's colours, over the photo
            drawn = overlay("pca", res.image, self.pca_panel.colours, self.pca_panel.shown_patches)
        else:
            drawn = overlay(s.overlay, res.image, res.fused(s.heads), self.current_mask)
        self.mask_view.setPixmap(fit(rgb_to_pixmap(drawn), self.mask_view.width(), self.mask_view.height()))

    def _failed(self, message: str) -> None:
        self.main.statusBar().showMessage(message, 8000)

    # ------------------------------------------------------------------ patch features (PCA)
    def _add_feature_panels(self, row) -> None:
        self.pca_panel = PCAPanel()
        self.pca_panel.controls.changed.connect(self._rethreshold)  # the pca overlay follows the panel
        row.addWidget(self.pca_panel)
        self.sim_panel = SimilarityPanel()
        row.addWidget(self.sim_panel)

    def other_results(self) -> dict:
        """The other gallery photos' cached results at this model and size, by file name: what a click on a
        patch is matched against (a photo not yet shown has none, and is not run for it)."""
        out = {}
        for path in self.photos:
            res = self.cache.get(self._key(path))
            if path != self.current and res is not None:
                out[Path(path).name] = res
        return out

    # ------------------------------------------------------------------ saving
    def _save_all(self):
        folder = QFileDialog.getExistingDirectory(self, "Save results to")
        if folder:
            self.save_all(folder)

    def save_all(self, folder: str) -> None:
        """The same files as `highlighter attention --pca` writes, for every photo in the gallery."""
        from highlighter.features import pca_rgb
        from highlighter.results import OutputNames, write_attention, write_boxes

        engine, photos, s = self.state.engine, dict(self.photos), self.state
        t, heads = s.threshold, s.heads
        cached = {p: self.cache.get(self._key(p)) for p in photos}
        sizes = {p: self._size(img) for p, img in photos.items()}

        def save():
            out, names, boxes = Path(folder), OutputNames(), {}
            out.mkdir(parents=True, exist_ok=True)
            for path, img in photos.items():
                res = cached.get(path) or engine.run(img, sizes[path], tokens=True)
                stem = names.stem(Path(path))
                pca = pca_rgb(res.tokens, res.grid) if res.tokens is not None else None
                boxes[stem] = write_attention(out, stem, res, "mass", t, heads, pca)["box"]
            write_boxes(out, boxes)
            return f"saved {len(photos)} result(s) to {out}"

        self.save_job = Job(lambda msg: self.main.statusBar().showMessage(msg, 8000), self._failed)
        self.save_job.start(save)
