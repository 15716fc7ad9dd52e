"""The Photos tab: drop photos or folders, see per-head and fused heatmaps and the overlay, save them all.

Each photo takes the Live tab's road (``video.pipeline.FramePipeline.process``, on ``video.session.photo_road``),
with visualize_attention.py's resize; the overlay mode, heads, mass kept and resolution are the app state's, shared
with the Live tab, so both tabs draw the same mask in the same way for the same picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from highlighter.errors import ImageError
from highlighter.gui.controls import StateControls
from highlighter.gui.features_panel import PCAPanel, SimilarityPanel
from highlighter.gui.qt_util import FitGrid, FitLabel, Job, rgb_to_pixmap
from highlighter.images import expand_inputs, load_rgb
from highlighter.postprocess import heads_or_all
from highlighter.render import heatmap, overlay
from highlighter.video.pipeline import Settings

RESULTS_DIR = "highlighter-results"  # under the home folder: where "Save all…" first offers to write
COMPUTING = "computing…"


SHOWN_MAX = 2048  # the overlay of a larger photo is drawn on a copy this long (a slider step stays quick)


def shown_picture(res) -> np.ndarray:
    """The picture a result's overlay is drawn on in the tab: the whole photo, or for a photo longer than SHOWN_MAX
    a copy scaled down to it (made once per result; the saved files are drawn on the photo itself)."""
    H, W = res.frame.shape[:2]
    if max(H, W) <= SHOWN_MAX:
        return res.frame
    small = getattr(res, "shown_copy", None)
    if small is None:
        import cv2

        scale = SHOWN_MAX / max(H, W)
        small = cv2.resize(res.frame, (max(1, round(W * scale)), max(1, round(H * scale))),
                           interpolation=cv2.INTER_AREA)
        res.shown_copy = small
    return small


def unreadable_item(message: str) -> QListWidgetItem:
    """One unreadable file: "name: reason" (the folder is in the tooltip, with the whole message)."""
    path, sep, reason = message.partition(": ")
    text = f"{Path(path).name}: {reason}" if sep and ("/" in path or "\\" in path) else message
    item = QListWidgetItem(text)
    item.setToolTip(message)
    return item


class PhotosTab(QWidget):
    def __init__(self, main):
        super().__init__()
        self.main = main
        self.state = state = main.state
        self.setAcceptDrops(True)
        self.photos: dict[str, np.ndarray] = {}  # path -> the photo, RGB uint8 (the results' frame: not copied)
        self.cache: dict[tuple, object] = {}  # (path, model id, image size) -> FrameResult
        self.model_calls = 0
        self.road_preprocessing: str | None = None  # None: the model's (official); a test may ask for fast
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
        self.unreadable.setMaximumHeight(110)
        self.unreadable.setWordWrap(True)  # the reason is read in full, on two lines if need be
        self.unreadable.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # a long name loses its middle, not the reason
        self.unreadable.setToolTip("files that could not be read, with the reason (hover one for its full path)")
        self.hint = QLabel("Drop photos or folders here, or use Open…")
        self.hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.fused_view, self.mask_view = (FitLabel(min_size=(240, 160), top=True) for _ in range(2))
        self.heads = FitGrid()  # as many columns as make the per-head maps largest in the space
        self.heads.setMinimumHeight(120)
        self.busy = QLabel("")  # "computing…" while the model runs on the selected photo
        self.busy.setStyleSheet("color: #a05a00; font-weight: bold;")

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
        self.titles = []  # the captions of the overlay and the fused heatmap (with the model's name when comparing)
        for title, view in (("Overlay", self.mask_view), ("Fused heatmap", self.fused_view)):
            box = QVBoxLayout()
            self.titles.append(QLabel(title))
            box.addWidget(self.titles[-1])
            box.addWidget(view, 1)
            big.addLayout(box)
        self._add_feature_panels(big)
        rl.addWidget(self.hint)
        rl.addWidget(self.busy)
        rl.addLayout(big, 3)
        rl.addWidget(self._compare_row(), 3)
        rl.addWidget(QLabel("Per-head heatmaps"))
        rl.addWidget(self.heads, 2)
        split = QSplitter()
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(1, 3)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(split, 1)
        subs = [(state.threshold_changed, self._rethreshold), (state.overlay_changed, self._rethreshold),
                (state.heads_changed, self._redraw), (state.image_size_changed, self.refresh),
                (state.model_changed, self.refresh), (state.compare_changed, self._show_compare)]
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
            self.unreadable.addItem(unreadable_item(msg))
        for path, img in ok:
            if path in self.photos:
                continue
            self.photos[path] = np.asarray(img)
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

    def road(self, engine=None):
        """The road a photo takes for ``engine`` (by default the state's model): its predictor's model, each photo's
        shorter side at the state's image size (as in Live), the patch tokens and keys kept (PCA, similarity)."""
        from highlighter.video.session import photo_road

        engine = engine or self.state.engine
        s = self.state
        settings = Settings(threshold=s.threshold, heads=s.heads, overlay="mask" if s.overlay == "pca" else s.overlay,
                            keep_features=True, draw=False)  # drawn by _rethreshold, for the settings of the moment
        how = self.road_preprocessing or engine.preprocessing
        return photo_road(engine.ck, "cpu", s.image_size, how, settings, model=engine.model)

    @staticmethod
    def run(road, path: str, photo: np.ndarray):
        """The photo's result, kept in the cache: its frame is the gallery's array (not a copy) and it has no
        overlay (``_rethreshold`` draws it from the maps for the settings of the moment), so a cached photo costs
        little more than its maps."""
        return road.process(photo, name=Path(path).name)

    def _key(self, path: str) -> tuple:
        return path, id(self.state.engine), self.state.image_size, self.road_preprocessing

    def refresh(self, *_) -> None:
        if self.current is None:
            return
        if self.state.engine is None:  # a quick start: the first model still loads; its model_changed comes here
            self._computing(Path(self.current).name)
            self.busy.setText(f"waiting for the model to load ({Path(self.current).name})")
            return
        key = self._key(self.current)
        if key in self.cache:
            self._show_result((key, self.cache[key]))
            return
        road, path, img = self.road(), self.current, self.photos[self.current]
        self._computing(Path(path).name)

        def run():
            self.model_calls += 1
            return key, self.run(road, path, img)

        if not self.job.start(run):
            self._again = True

    def _computing(self, name: str) -> None:
        """The maps of the previous photo go: what is on screen is never another photo's."""
        self.busy.setText(f"{COMPUTING} ({name})")
        for view in (self.mask_view, self.fused_view):
            view.set_source(None)
            view.setText(COMPUTING)
        self.heads.clear()

    def _show_result(self, result) -> None:
        key, res = result
        self.cache[key] = res
        if getattr(self, "_again", False):  # the selection or the size changed while the model ran
            self._again = False
            self.refresh()
        if key != self._key(self.current):
            return
        self.hint.hide()
        self.busy.setText("")
        self._redraw()

    def _redraw(self, *_) -> None:
        res = self.current_result()
        if res is None:
            return
        p = res.patch_size
        self.fused_view.set_source(rgb_to_pixmap(heatmap(res.fused_map(self.state.heads), p)))
        self.heads.clear()
        h_px, w_px = res.image.shape[:2]
        self.heads.set_aspect(w_px / h_px)
        for h in range(res.attention.shape[0]):
            self.heads.add(f"head {h}").set_source(rgb_to_pixmap(heatmap(res.attention[h], p)))
        self.pca_panel.show_result(res)
        self.sim_panel.set_result(res, self.other_results())
        self._rethreshold()  # and the second model's maps, when comparing

    @property
    def head_views(self) -> list[FitLabel]:
        return self.heads.views()

    def current_result(self):
        if self.current is None or self.state.engine is None:
            return None
        return self.cache.get(self._key(self.current))

    def _rethreshold(self, *_) -> None:
        """Re-threshold from the cached attention and redraw the overlay: no model call. The same mask and the same
        drawing as the road's (``FramePipeline.process``) for the state's settings."""
        res = self.current_result()
        if res is None:
            return
        s = self.state
        self.current_mask = res.fused_mask("mass", s.threshold, s.heads)
        if s.overlay == "pca" and self.pca_panel.colours is not None:  # the PCA panel's colours, over the photo
            drawn = overlay("pca", shown_picture(res), self.pca_panel.colours, self.pca_panel.shown_patches)
        else:
            drawn = overlay(s.overlay, shown_picture(res), res.fused_map(s.heads), self.current_mask)
        self.current_overlay = drawn  # what the overlay view shows, at the photo's own size
        self.mask_view.set_source(rgb_to_pixmap(drawn))
        self._show_compare()

    def _failed(self, message: str) -> None:
        self.busy.setText("")
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

    # ------------------------------------------------------------------ a second model, side by side
    def _compare_row(self) -> QWidget:
        """The second model's overlay and fused heatmap, under the first model's (shown while comparing)."""
        self.compare_calls = 0
        self.compare_job = Job(self._compare_computed, self._failed)
        self.compare_mask_view, self.compare_fused_view = (FitLabel(min_size=(240, 140), top=True) for _ in range(2))
        self.compare_titles = [QLabel("Overlay"), QLabel("Fused heatmap")]
        self.compare_panel = QWidget()
        row = QHBoxLayout(self.compare_panel)
        row.setContentsMargins(0, 0, 0, 0)
        for title, view in zip(self.compare_titles, (self.compare_mask_view, self.compare_fused_view)):
            box = QVBoxLayout()
            box.addWidget(title)
            box.addWidget(view, 1)
            row.addLayout(box)
        row.addStretch(1)
        self.compare_panel.hide()
        return self.compare_panel

    def _compare_key(self, path: str) -> tuple:
        return path, id(self.state.compare_engine), self.state.image_size, self.road_preprocessing

    def compare_result(self):
        if self.current is None or self.state.compare_engine is None:
            return None
        return self.cache.get(self._compare_key(self.current))

    def _show_compare(self, *_) -> None:
        """Both models' maps for the photo shown, each captioned with its model; the threshold, overlay and
        heads are the state's for both (a head the second model lacks: its fused map, and the caption says so).
        The second model runs once per photo and size, off the GUI thread; then redraws come from its cache."""
        from highlighter.features import pca_rgb
        from highlighter.paths import model_label

        s, engine = self.state, self.state.compare_engine
        self.compare_panel.setVisible(engine is not None)
        first = f" — {model_label(s.model_spec)}" if engine is not None else ""
        self.titles[0].setText(f"Overlay{first}")
        self.titles[1].setText(f"Fused heatmap{first}")
        if engine is None or self.current is None:
            return
        name = model_label(s.compare_spec)
        res = self.compare_result()
        if res is None:
            for title, kind in zip(self.compare_titles, ("Overlay", "Fused heatmap")):
                title.setText(f"{kind} — {name}")
            for view in (self.compare_mask_view, self.compare_fused_view):
                view.set_source(None)
                view.setText(COMPUTING)
            if not self.compare_job.busy:
                key, path = self._compare_key(self.current), self.current
                road, img = self.road(engine), self.photos[path]

                def run():
                    self.compare_calls += 1
                    return key, self.run(road, path, img)

                self.compare_job.start(run)
            return
        heads, note = heads_or_all(s.heads, res.attention.shape[0]), ""
        if s.heads and heads is None:
            note = f" (no head {max(s.heads)} in its {res.attention.shape[0]}: fused)"
        mask = res.fused_mask("mass", s.threshold, heads)
        if s.overlay == "pca" and res.tokens is not None:
            drawn = overlay("pca", shown_picture(res), pca_rgb(res.tokens, res.grid), np.ones(res.grid, bool))
        else:
            drawn = overlay(s.overlay, shown_picture(res), res.fused_map(heads), mask)
        self.compare_titles[0].setText(f"Overlay — {name}{note}")
        self.compare_titles[1].setText(f"Fused heatmap — {name}{note}")
        self.compare_mask_view.set_source(rgb_to_pixmap(drawn))
        self.compare_fused_view.set_source(rgb_to_pixmap(heatmap(res.fused_map(heads), res.patch_size)))

    def _compare_computed(self, result) -> None:
        key, res = result
        self.cache[key] = res
        self._show_compare()  # this photo's, or the next one's computation when the selection moved

    # ------------------------------------------------------------------ saving
    def save_start_dir(self) -> str:
        """Where the folder dialog opens: the last folder saved to, else ~/highlighter-results; never a folder
        the photos come from (one click there would write into a dataset)."""
        photo_dirs = {Path(p).parent.resolve() for p in self.photos}
        last = self.main.settings_value("results_dir", "", str)
        if last and Path(last).is_dir() and Path(last).resolve() not in photo_dirs:
            return last
        return str(Path.home() / RESULTS_DIR)

    def files_per_photo(self) -> int:
        """What write_attention writes for one photo: the .npz, a heatmap per head, the fused map, the overlay and
        the PCA picture (boxes.json is one more file for them all)."""
        return self.state.ck.vit.num_heads + 4

    def _save_all(self):
        if not self.photos:
            self.main.statusBar().showMessage("nothing to save: add photos first", 5000)
            return
        if self.state.engine is None:
            self.main.statusBar().showMessage("the model is still loading: save once it has loaded", 5000)
            return
        start = self.save_start_dir()
        Path(start).mkdir(parents=True, exist_ok=True)
        folder = QFileDialog.getExistingDirectory(self, "Save results to", start)
        if not folder:
            return
        n = len(self.photos)
        files = n * self.files_per_photo() + 1
        into_photos = Path(folder).resolve() in {Path(p).parent.resolve() for p in self.photos}
        question = (f"Write {files} files (the results of {n} photo{'s' if n != 1 else ''}) to\n{folder}?"
                    + ("\n\nThis is a folder the photos come from: the results will sit among them." if into_photos
                       else ""))
        answer = QMessageBox.question(self, "Save all results", question,
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
                                      QMessageBox.StandardButton.Cancel if into_photos
                                      else QMessageBox.StandardButton.Yes)
        if answer != QMessageBox.StandardButton.Yes:
            return
        self.main.set_setting("results_dir", folder)
        self.save_all(folder)

    def save_all(self, folder: str) -> None:
        """The same files as `highlighter attention --pca` writes, for every photo in the gallery."""
        from highlighter.features import pca_rgb
        from highlighter.results import OutputNames, write_attention, write_boxes

        photos, s = dict(self.photos), self.state
        t, heads = s.threshold, s.heads
        cached = {p: self.cache.get(self._key(p)) for p in photos}
        road = self.road()

        def save():
            out, names, boxes, nfiles = Path(folder), OutputNames(), {}, 0
            out.mkdir(parents=True, exist_ok=True)
            for path, img in photos.items():
                res = cached.get(path) or self.run(road, path, img)
                stem = names.stem(Path(path))
                pca = pca_rgb(res.tokens, res.grid) if res.tokens is not None else None
                boxes[stem] = write_attention(out, stem, res, "mass", t, heads, pca)["box"]
                nfiles += files_each - (pca is None)
            write_boxes(out, boxes)
            return f"saved {len(photos)} result(s), {nfiles + 1} files, to {out}"

        files_each = self.files_per_photo()
        self.main.statusBar().showMessage(f"saving {len(photos)} result(s) to {folder}…")
        self.save_job = Job(lambda msg: self.main.statusBar().showMessage(msg), self._failed)
        self.save_job.start(save)
