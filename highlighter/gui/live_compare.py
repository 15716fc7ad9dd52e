"""The Live tab's second model, side by side: its view, and its pipeline built off the GUI thread. A mixin of
``LiveTab``."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from highlighter.gui.qt_util import Job, fit, rgb_to_pixmap


class CompareMixin:
    # ------------------------------------------------------------------ a second model, side by side
    def _views_row(self) -> QHBoxLayout:
        """The view, and (while comparing) the second model's view next to it, each captioned with its model."""
        self.view_title, self.view2_title = QLabel(""), QLabel("")
        self.view2 = QLabel("")
        self.view2.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.view2.setMinimumSize(320, 300)
        self.view2.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.view2.setStyleSheet("background: #202020; color: #dddddd;")
        row = QHBoxLayout()
        self.view2_box = QWidget()  # hidden whole, so that the single view takes the row alone
        for title, view, box in ((self.view_title, self.view, QWidget()), (self.view2_title, self.view2,
                                                                          self.view2_box)):
            col = QVBoxLayout(box)
            col.setContentsMargins(0, 0, 0, 0)
            col.addWidget(title)
            col.addWidget(view, 1)
            row.addWidget(box, 1)
        self.view_title.hide()
        self.view2_box.hide()
        return row

    def _compare_changed(self, engine) -> None:
        from highlighter.paths import model_label

        on = engine is not None
        self.view_title.setVisible(on)
        self.view2_box.setVisible(on)
        if on:
            self.view_title.setText(model_label(self.state.model_spec))
            self.view2_title.setText(model_label(self.state.compare_spec))
            self.view2.setText("loading…")
        pipe = getattr(self, "pipeline", None)
        if pipe is not None:
            pipe.second = None
        self._attach_compare()

    def _attach_compare(self) -> None:
        """Run each frame through the second model too (built off the GUI thread, at the stream's size for
        its own patch size), with the same settings: threshold, heads, overlay."""
        engine, pipe = self.state.compare_engine, getattr(self, "pipeline", None)
        if engine is None or pipe is None or self.runner is None:
            return
        size, short = pipe.predictor.image_size, self.state.image_size

        def build():
            from highlighter.video.session import second_pipeline

            return pipe, engine, second_pipeline(engine, size, short, self.settings, pipe.predictor.preprocessing)

        if getattr(self, "compare_job", None) is None:
            self.compare_job = Job(self._compare_built, self._on_status)
        if not self.compare_job.start(build):
            QTimer.singleShot(200, self._attach_compare)  # one being built: ask again when it is done

    def _compare_built(self, result) -> None:
        pipe, engine, second = result
        if pipe is getattr(self, "pipeline", None) and engine is self.state.compare_engine:
            pipe.second = second  # the inference thread runs it from its next frame

    def _show_second(self, res) -> None:
        second = res.compare
        if second is None or self.state.compare_engine is None:
            return
        self.view2.setPixmap(fit(rgb_to_pixmap(second.overlay), self.view2.width(), self.view2.height()))
        heads = self.settings.heads
        from highlighter.paths import model_label

        note = (f" (no head {max(heads) if not isinstance(heads, int) else heads} in its "
                f"{second.attention.shape[0]}: fused)" if heads is not None and second.heads_used is None else "")
        self.view2_title.setText(model_label(self.state.compare_spec) + note)
