"""The main window: a model picker and the Live, Photos, MAE and Train tabs.

The tabs share a Qt-free ``AppState`` (model, threshold, heads, overlay, image size) and subscribe to its
events; the window loads models into it and persists its values in QSettings."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, QTimer
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from highlighter.app_state import AppState
from highlighter.defaults import MASS
from highlighter.gui.qt_util import CloseOnSignals, Job, MainThreadGC, wait_for_jobs
from highlighter.paths import checkpoint_label, default_checkpoint_or_none, model_label

DEMO = "random:vit_small/16"
OPEN = "Open checkpoint…"
GET = "Get official weights…"
FIRST_LOAD_DELAY_MS = 4000  # a quick start loads the model after the first frame, or after this at the latest
COMPARE = "Compare with…"
STOP_COMPARE = "Stop comparing"
OTHER_FILE = "Another checkpoint file…"


def load_engine(spec: str):
    """(path, the Photos tab's predictor) for a file, an official name (its downloaded file) or ``random:...``; any
    thread. The predictor's model is the one the Live tab's first predictor shares (``first_predictor``)."""
    from highlighter.core.formats import load_checkpoint
    from highlighter.runtime.predictor import photo_predictor
    from highlighter.weights import resolve

    path = resolve(spec)
    return path, photo_predictor(load_checkpoint(path), device="cpu")


class MainWindow(QMainWindow):
    def __init__(self, checkpoint: str | None = None, source: str | None = None, quiet: bool = False,
                 quit_after: int | None = None, launched: float | None = None, quick_start: bool = False):
        """``quick_start``: when the first model has an exported ONNX graph (``runtime.graphs``), load it in the
        background and let the Live tab stream on the graph meanwhile, before torch is even imported."""
        super().__init__()
        self.quiet = quiet  # tests: no modal dialogs
        path = os.environ.get("HIGHLIGHTER_SETTINGS")
        self.qsettings = QSettings(path, QSettings.Format.IniFormat) if path else QSettings("highlighter",
                                                                                             "highlighter")
        self.setWindowTitle("highlighter")
        self.state = self._restore_state()
        self.last_error: str | None = None
        self.exit_code = 0  # main()'s, when the loop ends: 2 when --quit-after could not stream
        self.gc = MainThreadGC(self)  # cycles are collected on this thread, never by a worker
        self.model_job = Job(self._model_loaded, self._model_failed)
        self.first_job = Job(self._first_loaded, self._first_failed)
        self.quick: str | None = None  # the model file that Live streams on its graph while the model loads
        self._first_work = None  # a quick start's model load, not started yet
        self._when_ready: list = []  # what waits for the first model (the MAE tab's own load)
        self.compare_job = Job(self._compare_loaded, self._compare_failed)
        self.weights_dialog = None

        self.model_combo = QComboBox()
        self.model_combo.setMinimumWidth(320)
        self.model_info = QLabel("loading model…")
        self.model_info.setWordWrap(True)
        self._fill_models()
        self.model_combo.activated.connect(self._model_picked)
        from highlighter.gui.live import LiveTab
        from highlighter.gui.mae import MaeTab
        from highlighter.gui.photos import PhotosTab
        from highlighter.gui.train import TrainTab

        top = QHBoxLayout()
        top.addWidget(QLabel("Model:"))
        top.addWidget(self.model_combo)
        top.addWidget(self.model_info, 1)
        self.compare_info = QLabel("")  # "comparing with …" while a second model is shown
        self.compare_info.setStyleSheet("color: #1f5fa0; font-weight: bold;")
        top.addWidget(self.compare_info)
        self.tabs = QTabWidget()
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.addLayout(top)
        lay.addWidget(self.tabs, 1)
        self.setCentralWidget(central)
        self._load_first(checkpoint, quick_start)
        self._select_current()
        self.live = LiveTab(self)
        self.live.quit_after = quit_after
        if launched is not None:
            self.live.launched = launched
        if source is not None:
            self.live.source.setCurrentText(str(source))
        self.photos = PhotosTab(self)
        self.mae = MaeTab(self)
        self.train = TrainTab(self)
        for w, name in ((self.live, "Live"), (self.photos, "Photos"), (self.mae, "MAE"), (self.train, "Train")):
            self.tabs.addTab(w, name)
        self.tabs.setCurrentIndex(int(self.settings_value("tab", 0, int)))
        geometry = self.qsettings.value("geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        else:
            self.resize(1280, 860)
        self.statusBar().showMessage("ready")
        self.t_window = time.monotonic()  # built, with its first model (--quit-after reports it)

    # ------------------------------------------------------------------ settings
    def _restore_state(self) -> AppState:
        state = AppState()
        for setter, key, default, kind in ((state.set_threshold, "threshold", MASS, float),
                                           (state.set_overlay, "overlay", "mask", str),
                                           (state.set_image_size, "image_size", state.image_size, int)):
            try:
                setter(self.settings_value(key, default, kind))
            except ValueError:  # a stale or hand-edited setting: keep the default
                pass
        state.threshold_changed.connect(lambda v: self.set_setting("threshold", v))
        state.overlay_changed.connect(lambda v: self.set_setting("overlay", v))
        state.image_size_changed.connect(lambda v: self.set_setting("image_size", v))
        state.model_requested.connect(self._model_requested)
        return state

    # the model of Live and Photos lives in the state; these are for reading it
    @property
    def engine(self):
        return self.state.engine

    @property
    def ck(self):
        return self.state.ck

    @property
    def model_spec(self) -> str | None:
        return self.state.model_spec

    def settings_value(self, key: str, default, kind=str):
        value = self.qsettings.value(key, default)
        try:
            return kind(value)
        except (TypeError, ValueError):
            return default

    def set_setting(self, key: str, value) -> None:
        self.qsettings.setValue(key, value)

    # ------------------------------------------------------------------ models
    def _fill_models(self) -> None:
        self.model_combo.clear()
        default = default_checkpoint_or_none("attention")  # models/, or $HIGHLIGHTER_MODELS
        if default:
            self.model_combo.addItem(f"Default ({default.name})", str(default))
        self.model_combo.addItem("Untrained demo (random ViT-S/16)", DEMO)
        from highlighter.weights import downloaded

        official = downloaded()  # the cache on disk; nothing is fetched
        for entry, path in official:
            self.model_combo.addItem(f"{entry.name} (official {entry.family_name} {entry.arch})", str(path))
        for p in self.recent():
            if p not in {str(path) for _, path in official}:
                self.model_combo.addItem(checkpoint_label(p), p)  # runs by folder and step
        self.model_combo.addItem(GET, GET)
        self.model_combo.addItem(OPEN, OPEN)
        self.model_combo.addItem(COMPARE, COMPARE)  # a second model, shown next to the first
        if self.state.compare_engine is not None:
            self.model_combo.addItem(STOP_COMPARE, STOP_COMPARE)

    def recent(self) -> list[str]:
        value = self.qsettings.value("recent", [])
        items = [value] if isinstance(value, str) else list(value or [])
        return [p for p in items if p and Path(p).exists()][:8]

    def _model_picked(self, index: int) -> None:
        spec = self.model_combo.itemData(index)
        if spec == GET:
            self._select_current()
            self.open_weights_dialog()
            return
        if spec == OPEN:
            path, _ = QFileDialog.getOpenFileName(self, "Checkpoint", "", "Checkpoints (*.pth *.pt *.safetensors "
                                                  "*.bin);;All files (*)")
            self._select_current()
            if path:
                self.load_model(path)
            return
        if spec == COMPARE:
            self._select_current()
            if self.first_model_pending:  # a quick start: the first model is still loading
                self.statusBar().showMessage("the model is still loading: compare once it has loaded", 5000)
                return
            other = self.ask_compare()
            if other:
                self.compare_with(other)
            return
        if spec == STOP_COMPARE:
            self._select_current()
            self.stop_comparing()
            return
        if spec != self.model_spec:
            self.load_model(spec)

    def open_weights_dialog(self):
        """The "Get official weights…" dialog (non-modal); a verified download joins the picker and loads."""
        from highlighter.gui.weights_dialog import WeightsDialog

        if self.weights_dialog is None:
            self.weights_dialog = WeightsDialog(self)
            self.weights_dialog.downloaded.connect(self._official_downloaded)
        self.weights_dialog.refresh()
        self.weights_dialog.show()
        self.weights_dialog.raise_()
        return self.weights_dialog

    def _official_downloaded(self, path: str) -> None:
        """Live and Photos switch to the new file; an MAE file with a decoder also goes to the MAE tab."""
        from highlighter.weights import downloaded

        self._fill_models()
        self._select_current()
        if path != self.model_spec:
            self._when_idle(self.model_job, lambda: self.load_model(path))
        if any(e.decoder and str(p) == path for e, p in downloaded()):
            self._when_idle(self.mae.model_job, lambda: self.mae.load_model(path))

    def _when_idle(self, job, fn) -> None:
        """Run ``fn`` once ``job`` is not busy (a Job refuses a second start), polling on the GUI thread."""
        if job.busy:
            QTimer.singleShot(200, lambda: self._when_idle(job, fn))
        else:
            fn()

    def _load_first(self, asked: str | None, quick: bool = False) -> None:
        """The first model: the one asked for (--checkpoint), else the saved one, else the shipped default, else
        the untrained demo; the first that loads wins. It loads before the tabs exist, unless ``quick`` and the
        first candidate has an exported graph: it then loads in the background (importing torch is most of a
        start's time) while Live streams on the graph. A failure is said in ``last_error`` and never saved: only
        a model asked for that loaded becomes the saved choice, and a saved model that no longer loads is
        forgotten."""
        from highlighter.runtime import graphs
        from highlighter.weights import resolve

        saved = self.settings_value("model", "", str)
        default = default_checkpoint_or_none("attention")
        candidates = list(dict.fromkeys(s for s in (asked, saved, str(default) if default else None, DEMO) if s))
        if quick:
            try:
                first = resolve(candidates[0])
            except Exception:  # noqa: BLE001 - the normal road will say why
                first = None
            if first and graphs.known(first):
                self.quick = first
                self.model_info.setText(f"loading {Path(first).name}… (Live streams on its ONNX graph meanwhile)")
                self._first_work = lambda: (asked, saved, *self._try_models(candidates))
                QTimer.singleShot(FIRST_LOAD_DELAY_MS, self, self.load_first_now)  # at the latest; a frame sooner
                return
        self._apply_first((asked, saved, *self._try_models(candidates)))

    @staticmethod
    def _try_models(candidates: list[str]):
        """(path, engine, spec, errors) for the first candidate that loads; any thread (no Qt here)."""
        errors = []
        for spec in candidates:
            try:
                return *load_engine(spec), spec, errors
            except Exception as e:  # noqa: BLE001 - a bad choice must not stop the app
                errors.append((spec, f"could not load {spec}: {e}"))
        raise RuntimeError("; ".join(m for _, m in errors))  # the demo model always loads: not reached

    def _apply_first(self, result) -> None:
        asked, saved, path, engine, spec, errors = result
        if saved in {s for s, _ in errors}:
            self.qsettings.remove("model")
        self._set_model(path, engine, save=bool(asked) and spec == asked)
        if errors:
            self.last_error = "; ".join(m for _, m in errors) + f". Using {self._model_name(path)} instead."

    def load_first_now(self) -> None:
        """Start the quick start's background model load (once): Live calls it on its first frame, since
        importing torch beside the stream's start would delay that frame."""
        work, self._first_work = self._first_work, None
        if work is not None:
            self.first_job.start(work)

    def _first_loaded(self, result) -> None:
        """The background first load is done: the tabs take the model (Live keeps its stream when it is the
        model it streamed), and what waited for it runs. A model the user picked meanwhile, already loaded,
        is kept."""
        if self.state.ck is None:
            self._apply_first(result)
            if self.last_error:
                self.show_error(self.last_error)
        self.quick = None
        self._select_current()
        self._run_when_ready()

    def _first_failed(self, message: str) -> None:
        self.quick = None
        self.show_error(message)
        self._run_when_ready()
        if self.live.quit_when_chosen:  # --quit-after was waiting for the model
            self.close()

    def _run_when_ready(self) -> None:
        for fn in self._when_ready:
            fn()
        self._when_ready.clear()

    @property
    def first_model_pending(self) -> bool:
        return self._first_work is not None or self.first_job.busy

    def when_model_ready(self, fn) -> None:
        """Run ``fn`` once the first model is loaded (at once when it is)."""
        if self.first_model_pending:
            self._when_ready.append(fn)
        else:
            fn()

    def show_error(self, message: str) -> None:
        """A model that could not be used: stderr, the status bar, and a dialog unless nobody is there to see it."""
        print(f"warning: {message}", file=sys.stderr, flush=True)
        self.statusBar().showMessage(message, 15000)
        if not self.quiet and self.live.quit_after is None:  # a timed run has nobody to press OK
            QMessageBox.warning(self, "Model unavailable", message)

    @staticmethod
    def _model_name(spec: str) -> str:
        return "the untrained demo model" if spec.startswith("random:") else Path(spec).name

    def load_model(self, spec: str) -> None:
        self.statusBar().showMessage(f"loading {spec}…")
        self.model_job.start(lambda: load_engine(spec))

    def _model_loaded(self, result) -> None:
        spec, engine = result
        self._set_model(spec, engine)
        if not spec.startswith("random:"):
            recent = [spec] + [p for p in self.recent() if p != spec]
            self.set_setting("recent", recent[:8])
            self._fill_models()
        self._select_current()
        self.statusBar().showMessage(f"model: {engine.ck.vit.describe()}", 5000)

    def _model_requested(self, path: str, kind: str) -> None:
        if kind != "mae":  # the MAE tab takes MAE models itself
            self.load_model(path)

    def _set_model(self, spec: str, engine, save: bool = True) -> None:
        from highlighter.card import model_note

        self.state.set_model(spec, engine)  # the tabs follow through the state's model_changed
        if save:
            self.set_setting("model", spec)
        ck = engine.ck
        where = f"{ck.name} ({ck.source})" if ck.path else ck.source
        note = "untrained: the maps are noise; open a trained checkpoint" if not ck.path else model_note(ck.path,
                                                                                                       ck.meta)
        self.model_info.setText(f"{ck.vit.arch_name}, patch {ck.vit.patch_size}, {ck.vit.num_heads} heads — "
                                f"{where}" + (f"  —  {note}" if note else ""))
        self.model_info.setStyleSheet("color: #b35900;" if note and not note.startswith("mask IoU") else "")

    def _select_current(self) -> None:
        """The picker names the model that is loaded, or loading (one not in its list, such as --checkpoint FILE,
        is added)."""
        spec = self.model_spec or self.quick
        i = self.model_combo.findData(spec)
        if i < 0 and spec:
            label = f"{spec} (untrained)" if spec.startswith("random:") else Path(spec).name
            self.model_combo.insertItem(max(0, self.model_combo.findData(GET)), label, spec)  # before Get…, Open…
            i = self.model_combo.findData(spec)
        if i >= 0:
            self.model_combo.setCurrentIndex(i)

    def _model_failed(self, message: str) -> None:
        """The app keeps the previous model and stays up."""
        self.last_error = message
        self._select_current()
        self.statusBar().showMessage("could not load that checkpoint; kept the previous model", 8000)
        if not self.quiet:
            QMessageBox.critical(self, "Cannot load checkpoint", message)
        self.error_shown = message

    # ------------------------------------------------------------------ a second model, side by side
    def known_models(self) -> list[tuple[str, str]]:
        """(label, spec) of the picker's models, the special entries left out."""
        specials = {GET, OPEN, COMPARE, STOP_COMPARE}
        items = [(self.model_combo.itemText(i), self.model_combo.itemData(i)) for i in range(self.model_combo.count())]
        return [(label, spec) for label, spec in items if spec and spec not in specials]

    def ask_compare(self) -> str | None:
        """"Compare with…": one of the picker's other models, or a checkpoint file."""
        models = [(label, spec) for label, spec in self.known_models() if spec != self.model_spec]
        labels = [label for label, _ in models] + [OTHER_FILE]
        label, ok = QInputDialog.getItem(self, COMPARE, "Show next to the current model:", labels, 0, False)
        if not ok:
            return None
        if label == OTHER_FILE:
            path, _ = QFileDialog.getOpenFileName(self, "Checkpoint to compare with", "", "Checkpoints (*.pth *.pt "
                                                  "*.safetensors *.bin);;All files (*)")
            return path or None
        return dict(models)[label]

    def compare_with(self, spec: str) -> bool:
        """Load a second model off the GUI thread; Live and Photos then show its maps next to the first's."""
        self.statusBar().showMessage(f"loading {spec} to compare…")
        self.compare_info.setText(f"loading {model_label(spec)} to compare…")
        return self.compare_job.start(lambda: load_engine(spec))

    def _compare_loaded(self, result) -> None:
        spec, engine = result
        self.state.set_compare(spec, engine)  # the tabs follow through compare_changed
        self._fill_models()
        self._select_current()
        self.compare_info.setText(f"comparing with {model_label(spec)}")
        self.statusBar().showMessage(f"comparing with {engine.ck.vit.describe()}", 5000)

    def _compare_failed(self, message: str) -> None:
        self.compare_info.setText(f"comparing with {model_label(self.state.compare_spec)}"
                                  if self.state.compare_engine is not None else "")
        self.last_error = message
        self.statusBar().showMessage(f"could not load the model to compare: {message}", 8000)

    def stop_comparing(self) -> None:
        self.state.set_compare(None, None)
        self._fill_models()
        self._select_current()
        self.compare_info.setText("")

    # ------------------------------------------------------------------ closing
    def closeEvent(self, event):  # noqa: N802
        if self.weights_dialog is not None:
            self.weights_dialog.close()  # cancels a running download (its partial file stays for a resume)
        self.live.close_writer()  # stops the stream and finishes the files being written
        self.train.stop()
        if not wait_for_jobs(30.0):  # a model load or save still running: its thread must not outlive us
            print("warning: a background job was still running after 30 s", file=sys.stderr)
        self.gc.stop()
        self.set_setting("geometry", self.saveGeometry())
        self.set_setting("tab", self.tabs.currentIndex())
        self.qsettings.sync()
        super().closeEvent(event)


def main(checkpoint: str | None = None, source: str | None = None, autostart: bool = True,
         quit_after: int | None = None, launched: float | None = None) -> int:
    """``launched``: time.monotonic() when the process started (for --quit-after's first_frame_s)."""
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("highlighter")
    win = MainWindow(checkpoint, source, quit_after=quit_after, launched=launched, quick_start=True)
    signals = CloseOnSignals(win)  # Ctrl-C and SIGTERM close the window as its close button does
    win.show()
    if win.last_error:
        win.show_error(win.last_error)  # a dialog: a signal while it is up closes it and the window
    if signals.received is not None:  # closed (settings saved) before the event loop started: nothing to run
        if win.isVisible():  # the signal came after the dialog: its queued close has not run
            win.close()
        signals.restore()
        return win.exit_code or 0
    if autostart or quit_after is not None:
        win.live.start()
    try:
        return app.exec() or win.exit_code
    finally:
        signals.restore()
