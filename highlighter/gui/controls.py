"""The controls that the Live and Photos tabs share, bound both ways to the app's ``AppState``."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSlider, QWidget

from highlighter.render import OVERLAYS

SIZES = (160, 224, 288, 384, 480)  # shorter sides offered; the state's own value is added when it is another


class StateControls(QWidget):
    """Overlay mode, heads, the mass kept and the resolution. Changing one sets the state; a change of the state
    (made in the other tab, or by loading a model) shows here. Unsubscribes when destroyed."""

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self.state = state
        self.overlay = QComboBox()
        self.overlay.addItems(OVERLAYS)
        self.head = QComboBox()
        self.size = QComboBox()
        self.size.addItems([str(s) for s in sorted(set(SIZES) | {state.image_size})])
        self.size.setToolTip("the shorter side fed to the model, the aspect ratio kept (the same in Live and Photos)")
        self.threshold = QSlider(Qt.Orientation.Horizontal, minimum=5, maximum=95)
        self.threshold_label = QLabel()
        self.threshold_label.setMinimumWidth(110)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        for w in (QLabel("Overlay"), self.overlay, QLabel("Heads"), self.head, QLabel("Resolution"), self.size,
                  self.threshold_label, self.threshold):
            lay.addWidget(w)
        lay.setStretch(7, 1)
        self._show_overlay(state.overlay)
        self._show_size(state.image_size)
        self._show_threshold(state.threshold)
        self._fill_heads()
        self.overlay.currentTextChanged.connect(state.set_overlay)
        self.threshold.valueChanged.connect(lambda v: state.set_threshold(v / 100.0))
        self.size.currentTextChanged.connect(lambda t: state.set_image_size(int(t)) if t.isdigit() else None)
        self.head.currentIndexChanged.connect(lambda i: state.set_heads(None if i <= 0 else [i - 1]))
        subs = [(state.overlay_changed, self._show_overlay), (state.threshold_changed, self._show_threshold),
                (state.image_size_changed, self._show_size), (state.heads_changed, self._show_heads),
                (state.model_changed, self._fill_heads)]
        for signal, callback in subs:
            signal.connect(callback)
        self.destroyed.connect(lambda *_: [signal.disconnect(callback) for signal, callback in subs])

    def _quiet(self, widget, fn) -> None:
        widget.blockSignals(True)
        try:
            fn()
        finally:
            widget.blockSignals(False)

    def _show_overlay(self, name: str) -> None:
        self._quiet(self.overlay, lambda: self.overlay.setCurrentText(name))

    def _show_threshold(self, value: float) -> None:
        self._quiet(self.threshold, lambda: self.threshold.setValue(round(value * 100)))
        self.threshold_label.setText(f"Mass kept: {round(value * 100)}%")

    def _show_size(self, short: int) -> None:
        if self.size.findText(str(short)) < 0:
            self._quiet(self.size, lambda: self.size.addItem(str(short)))
        self._quiet(self.size, lambda: self.size.setCurrentText(str(short)))

    def _show_heads(self, heads) -> None:
        self._quiet(self.head, lambda: self.head.setCurrentIndex(heads[0] + 1 if heads else 0))

    def _fill_heads(self, *_) -> None:
        ck = self.state.ck

        def fill():
            self.head.clear()
            self.head.addItem("Fused (mean of heads)")
            for i in range(ck.vit.num_heads if ck else 0):
                self.head.addItem(f"Head {i}")

        self._quiet(self.head, fill)
        self._show_heads(self.state.heads)
