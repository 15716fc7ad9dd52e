"""The Live tab's patch-feature controls: the box, the PCA overlay's controls, click-to-compare (a clicked patch's
cosine similarity on every frame) and the Track controls' row; and the swap to a backend that gives the patch
tokens. A mixin of ``LiveTab``: it uses the tab's settings, pipeline, status line and view."""

from __future__ import annotations

from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from highlighter.gui.features_panel import FEATURE_KINDS, PCAControls
from highlighter.gui.qt_util import Job, fit, rgb_to_pixmap


class FeaturesMixin:
    # ------------------------------------------------------------------ patch features: PCA and boxes
    def _feature_controls(self) -> QVBoxLayout:
        """Two rows: the box checkbox and the pca overlay's controls (background removal, Refit); then
        click-to-compare and Track (one row would make the window wider than a 1400-pixel screen)."""
        self.box = QCheckBox("Box")
        self.box.setToolTip("draw the box of the mask's largest connected component")
        self.box.toggled.connect(lambda on: setattr(self.settings, "box", on))
        self.pca_controls = PCAControls(with_refit=True)
        self.pca_controls.changed.connect(self._set_pca)
        self.pca_controls.refit.connect(self.refit_pca)
        row, row2 = QHBoxLayout(), QHBoxLayout()
        row.addWidget(self.box)
        row.addWidget(QLabel("PCA overlay:"))
        row.addWidget(self.pca_controls)
        row.addStretch(1)
        self._similarity_controls(row2)
        row2.addStretch(1)
        rows = QVBoxLayout()
        rows.addLayout(row)
        rows.addLayout(row2)
        return rows

    def _set_pca(self) -> None:
        c = self.pca_controls
        s = self.settings
        s.pca_background, s.pca_threshold, s.pca_flip = c.background.isChecked(), c.value(), c.flip.isChecked()

    def refit_pca(self) -> None:
        pipe = getattr(self, "pipeline", None)
        if pipe is not None:
            pipe.refit_pca()
            self.status.setText("PCA: fitting the colours afresh on the next frames")

    def _ensure_tokens(self) -> None:
        """The pca overlay needs the patch tokens, which the ONNX graphs do not give: swap in torch fp32."""
        pipe = getattr(self, "pipeline", None)
        if self.runner is None or pipe is None or pipe.predictor.supports_tokens:
            return
        ck, engine, old = self.state.ck, self.state.engine, pipe.predictor
        if ck is None:  # a quick start's graph, the model still loading: the choice that follows swaps it in
            self.status.setText("the PCA overlay starts once the model is loaded (the graph gives no patch tokens)")
            return

        def make():
            from highlighter.video.session import tokens_predictor

            return pipe, old.name, tokens_predictor(ck, old, engine.model)

        if getattr(self, "tokens_job", None) is None:
            self.tokens_job = Job(self._swap_predictor, self._on_status)  # a method: its relay is this tab's child
        self.tokens_job.start(make)

    def _swap_predictor(self, result) -> None:
        pipe, old, pred = result
        if pipe is not getattr(self, "pipeline", None):  # a newer stream: its own predictor stays
            return
        self.choice_watch = None  # the watched backend no longer streams
        pipe.predictor = pred  # read once per frame by the inference thread
        what = ("Tracking needs" if self.track.on else "PCA needs" if self.settings.overlay == "pca"
                else "Click-to-compare needs")
        self.status.setText(f"{what} the patch tokens, which {old} does not give: now on {pred.name}")

    # ------------------------------------------------------------------ patch features: click-to-compare
    def _needs_tokens(self) -> bool:
        """The pca overlay and click-to-compare need a backend that gives the patch features (torch)."""
        return self.settings.overlay == "pca" or self.settings.keep_features

    def _similarity_controls(self, row) -> None:
        """"Click to compare" keeps each frame's patch features with its result; a click on the view then picks
        a patch, and the overlay shows every patch's cosine similarity to it, frame after frame, until Clear."""
        self.pick = None  # (FrameResult, patch index): the patch picked, on the frame it was picked on
        self.compare_box = QCheckBox("Click to compare")
        self.compare_box.setToolTip("keep each frame's patch features, so that a click on the view shows every "
                                    "patch's cosine similarity to the clicked one, frame after frame (torch only)")
        self.compare_box.toggled.connect(self._keep_features)
        self.sim_kind = QComboBox()
        self.sim_kind.addItems(list(FEATURE_KINDS))
        self.sim_kind.setToolTip("which features the similarity compares")
        self.sim_kind.currentTextChanged.connect(self._kind_changed)
        self.clear_sim = QPushButton("Clear")
        self.clear_sim.setToolTip("back to the normal overlay")
        self.clear_sim.setEnabled(False)
        self.clear_sim.clicked.connect(self.clear_similarity)
        from highlighter.gui.live_track import TrackControls

        self.track = TrackControls(self)  # a click or a box picks an object, followed frame after frame
        self.clear_sim.clicked.connect(self.track.clear)
        for w in (self.compare_box, self.sim_kind, self.track, self.clear_sim):
            row.addWidget(w)

    def _keep_features(self, on: bool) -> None:
        if on and self.track.on:
            self.track.box.setChecked(False)  # one meaning per click
        self.settings.keep_features = on or self.track.on
        if on:
            self._ensure_tokens()
            if self.pick is None:
                self.status.setText("Click to compare: click a patch of the picture")
        else:
            self.clear_similarity()

    def _features(self, res):
        return getattr(res, FEATURE_KINDS[self.sim_kind.currentText()], None) if res is not None else None

    def _view_clicked(self, x: float, y: float) -> None:
        """A click on the shown picture (in its pixels; the letterbox never gets here): pick that patch of the
        frame shown."""
        if self.track.on:
            self.track.clicked(x, y)
            return
        res = getattr(self, "shown", None)
        if res is None:
            return
        H, W = res.frame.shape[:2]
        x = x - W if x >= W else x  # the side overlay: its right half is the same frame's heatmap
        h, w = res.mask.shape
        self.pick_patch(res, min(int(y * h / H), h - 1) * w + min(int(x * w / W), w - 1))

    def pick_patch(self, res, index: int) -> None:
        """Take patch ``index``'s features from ``res`` (cached with it: no model call) as the reference of the
        similarity overlay, and show that frame's map at once, the patch marked."""
        from highlighter.features import cosine_similarity_map
        from highlighter.render import patch_box, similarity_overlay

        feats = self._features(res)
        if feats is None:
            if not self.compare_box.isChecked():
                self.compare_box.setChecked(True)  # keep the features from the next frame on
            paused = self.runner is not None and self.runner.paused.is_set()
            self.status.setText(f"this frame's patch features were not kept ({self.pipeline.predictor.name}); "
                                "they are from the next frames on: "
                                + ("resume the stream for a frame, then click again" if paused else "click again"))
            return
        kind = FEATURE_KINDS[self.sim_kind.currentText()]
        self.pick, self.pick_model = (res, index), id(self.state.ck)
        self.pipeline.reference = (kind, feats[index].copy())
        other = getattr(self.pipeline, "second", None)
        if other is not None and res.compare is not None and self._features(res.compare) is not None:
            h, w = res.mask.shape  # the same place of the frame on the second model's grid
            h2, w2 = res.compare.mask.shape
            i, j = divmod(index, w)
            j2 = min(int((j + 0.5) * w2 / w), w2 - 1)
            other.reference = (kind, self._features(res.compare)[min(int((i + 0.5) * h2 / h), h2 - 1) * w2 + j2].copy())
        grid = res.mask.shape
        self.picked_similarity = cosine_similarity_map(feats, index, grid)
        picture = similarity_overlay(res.frame, self.picked_similarity, patch_box(index, grid, res.frame.shape))
        self.view.setPixmap(fit(rgb_to_pixmap(picture), self.view.width(), self.view.height()))
        self.view.picture_size = picture.shape[:2]
        self.clear_sim.setEnabled(True)
        self.status.setText(self._similarity_text())

    def _stream_started(self) -> None:
        """A new stream (another size, the same model) keeps the patch picked; another model forgets it. A
        tracked object is forgotten (it was picked on the old stream's grid)."""
        self.track.stream_started()
        if self.pick is not None:
            res, index = self.pick
            if self.pick_model == id(self.state.ck):
                self.pipeline.reference = (FEATURE_KINDS[self.sim_kind.currentText()],
                                           self._features(res)[index].copy())
            else:
                self.clear_similarity()

    def _similarity_text(self) -> str:
        res, index = self.pick
        i, j = divmod(index, res.mask.shape[1])
        return (f"Similarity: every patch's cosine to patch ({i}, {j}) of frame {res.index} "
                f"({self.sim_kind.currentText()}), on each new frame; Clear returns to the {self.settings.overlay} "
                "overlay")

    def _kind_changed(self, *_) -> None:
        if self.pick is not None:
            self.pick_patch(*self.pick)  # the same patch, the other features: from the same cache

    def clear_similarity(self) -> None:
        self.pick = None
        for pipe in (getattr(self, "pipeline", None), getattr(getattr(self, "pipeline", None), "second", None)):
            if pipe is not None:
                pipe.reference = None
        self.clear_sim.setEnabled(False)
        self.status.setText(f"back to the {self.settings.overlay} overlay")
