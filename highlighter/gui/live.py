"""The Live tab: a camera, video file or image folder streamed through the fastest backend.

What it shows follows the app state (model, overlay, heads, mass kept, resolution: ``gui.controls``); the
frames run through ``video.pipeline.LiveRunner`` (capture and inference threads, latest frame wins); Record
and Snapshot hand the files to ``video.writer.Writer``, off the GUI thread.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from highlighter.errors import Cancelled
from highlighter.gui.controls import StateControls
from highlighter.gui.features_panel import FEATURE_KINDS, PCAControls, _ClickView
from highlighter.gui.qt_util import Job, Relay, fit, rgb_to_pixmap
from highlighter.paths import demo_clip
from highlighter.preprocess import fit_size
from highlighter.runtime import graphs
from highlighter.video.pipeline import FramePipeline, LiveRunner, Settings, StreamEnd
from highlighter.video.sources import list_cameras, open_source
from highlighter.video.writer import Recorder, Writer, snapshot_paths, write_snapshot

GRAPH_EXPORT_DELAY_MS = 20000  # a stream on torch exports its graph for the next quick start after this
RECORD_FPS = 25.0  # the most a recording is written at; a slower stream is written at its own rate,
RECORD_MIN_FPS = 5.0  # but not below this (a frame is then repeated to keep time): players handle it


class LiveTab(QWidget):
    def __init__(self, main):
        super().__init__()
        self.main = main
        state = main.state
        self.state = state
        self.settings = Settings(threshold=state.threshold, overlay=state.overlay, heads=state.heads)
        self.runner: LiveRunner | None = None
        self.predictors: dict = {}
        self.latest = None
        self._pending = False
        self.frames_shown = 0
        self.t_start = time.perf_counter()
        self.recorder: Recorder | None = None
        self.writer = Writer(max_pending=32, on_error=lambda m: self.relay.status.emit(f"could not save: {m}"),
                             name="live-writer")
        self.user_stopped = True
        self.retry = QTimer(self, singleShot=True, interval=3000)
        self.retry.timeout.connect(self._retry)
        self.relay = Relay(self)  # a child: deleted with the tab, on the GUI thread
        self.relay.result.connect(self._show_latest)
        self.relay.status.connect(self._on_status)
        self.job = Job(self._started, self._failed)
        self.choice_job = Job(self._chosen, self._choice_failed)
        self.cancel_choice = threading.Event()
        self.key = None  # (model, size) of the running stream
        self.choosing = None  # the key that the background choice is for
        self.choice_watch = None  # runtime.predictor.ChoiceWatch over a kept choice's backend
        self.description = ""
        self.choice_text = ""  # what the running stream's choice was (for --quit-after's "choice")
        self.choice_texts: dict = {}  # per (model, size), as self.predictors
        self.quit_after: int | None = None  # --quit-after N: report and close after N overlaid frames
        self.launched = time.monotonic()  # when the app was launched (the window sets it from the process)
        self.first_frame_t: float | None = None
        self.t_first_shown = 0.0
        self.record_t0: float | None = None
        self.quit_when_chosen = False
        self.choose_pending = False
        self.source_before = ""
        self.start_when_loaded = False  # a quick start found no graph for this source's size: wait for the model
        self.graph = None  # the graph a quick start streams on (runtime.graphs.Graph)
        self.first_backend = ""  # the backend of the first overlaid frame (--quit-after reports it)
        self.torch_at_first_frame = False

        self.source = QComboBox(editable=True)
        for i in list_cameras():
            self.source.addItem(str(i))
        if demo_clip().exists():
            self.source.addItem(str(demo_clip()))
        last = main.settings_value("source", "", str)
        self.source.setCurrentText(last or (self.source.itemText(0) if self.source.count() else ""))
        self.source.setToolTip("a camera index, a video file, an image folder or a pattern like frames/*.jpg")
        browse_file, browse_dir = QPushButton("File…"), QPushButton("Folder…")
        browse_file.clicked.connect(self._browse_file)
        browse_dir.clicked.connect(self._browse_dir)
        self.start_btn, self.pause_btn, self.stop_btn = QPushButton("Start"), QPushButton("Pause"), QPushButton("Stop")
        self.pause_btn.setCheckable(True)
        self.start_btn.clicked.connect(self.start)
        self.pause_btn.toggled.connect(self._pause)
        self.stop_btn.clicked.connect(self.stop)
        self.controls = StateControls(state)
        self.overlay, self.head, self.size = self.controls.overlay, self.controls.head, self.controls.size
        self.threshold, self.threshold_label = self.controls.threshold, self.controls.threshold_label
        self.smooth = QCheckBox("Smoothing")
        self.smooth.toggled.connect(self._set_smoothing)
        snap, self.record = QPushButton("Snapshot"), QPushButton("Record")
        snap.clicked.connect(self.snapshot)
        self.record.setCheckable(True)
        self.record.toggled.connect(self._record)
        self.stats = QLabel("stopped")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.view = _ClickView()  # a click picks a patch (click-to-compare)
        self.view.setText("Press Start")
        self.view.clicked.connect(self._view_clicked)
        self.view.setMinimumSize(480, 300)
        self.view.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.view.setStyleSheet("background: #202020; color: #dddddd;")

        row1 = QHBoxLayout()
        for w in (QLabel("Source:"), self.source, browse_file, browse_dir, self.start_btn, self.pause_btn,
                  self.stop_btn):
            row1.addWidget(w)
        row1.setStretch(1, 1)
        row2 = QHBoxLayout()
        for w in (self.controls, self.smooth, snap, self.record):
            row2.addWidget(w)
        row2.setStretch(0, 1)
        row3 = self._feature_controls()
        lay = QVBoxLayout(self)
        lay.addLayout(row1)
        lay.addLayout(row2)
        lay.addLayout(row3)
        lay.addLayout(self._views_row(), 1)
        lay.addWidget(self.stats)
        lay.addWidget(self.status)

        subs = [(state.threshold_changed, self._set_threshold), (state.overlay_changed, self._set_overlay),
                (state.heads_changed, self._set_heads), (state.image_size_changed, self._restart),
                (state.model_changed, self.model_changed), (state.compare_changed, self._compare_changed)]
        for signal, callback in subs:
            signal.connect(callback)
        self.destroyed.connect(lambda *_: [signal.disconnect(callback) for signal, callback in subs])

    # ------------------------------------------------------------------ following the state
    def model_changed(self, *_) -> None:
        ck = self.state.ck
        self.predictors.clear()
        self.choice_texts.clear()
        self.settings.heads = self.state.heads
        if self.runner is not None and self.key is not None and self.key[0] == "graph":
            quick = self.main.quick
            graph = self.graph
            if (ck is not None and ck.path and quick and Path(ck.path).resolve() == Path(quick).resolve()
                    and (ck.vit.patch_size, ck.vit.num_heads) == (graph.patch_size, graph.num_heads)):
                self.key = (id(ck), self.key[1])  # the graph was exported from this very file: the stream goes
                H, W = self.key[1]
                self.status.setText(f"{self.description}: backend {self.pipeline.predictor.name} at {H}x{W}; the "
                                    "model has loaded: choosing the fastest backend in the background…")
                self._choose()  # on, and the fastest backend is chosen now (on disk, or measured) for the switch
                return
        if self.start_when_loaded:
            self.start_when_loaded = False
            self.start()
        elif self.runner is not None:
            self._restart()

    def _set_threshold(self, value: float) -> None:
        self.settings.threshold = value

    def _set_overlay(self, name: str) -> None:
        self.settings.overlay = name
        if name == "pca":
            self._ensure_tokens()
        if self.pick is not None:
            self.status.setText(self._similarity_text())

    def _set_heads(self, heads) -> None:
        self.settings.heads = heads

    def _set_smoothing(self, on: bool):
        self.settings.smoothing = on

    # ------------------------------------------------------------------ sources
    def _browse_file(self):
        path, _ = QFileDialog.getOpenFileName(self, "Video or image", "", "Videos and images (*.mp4 *.avi *.mov "
                                              "*.mkv *.webm *.jpg *.jpeg *.png);;All files (*)")
        if path:
            self.source.setCurrentText(path)

    def _browse_dir(self):
        path = QFileDialog.getExistingDirectory(self, "Folder of images")
        if path:
            self.source.setCurrentText(path)

    def _pause(self, on: bool):
        if self.runner is not None:
            (self.runner.paused.set if on else self.runner.paused.clear)()

    # ------------------------------------------------------------------ running
    def start(self) -> None:
        """Stream at once on a safe backend: the model's exported graph while a quick start's model still loads
        (ONNX Runtime fp32, ``runtime.graphs``), else torch fp32 (no export); and choose the fastest backend
        meanwhile: from the on-disk cache when this model, size, machine and versions were seen before, else by
        measuring (``runtime.predictor.choose_backend``), in a background job; the stream switches when it is
        known (on a quick start, once the model has loaded)."""
        ck, engine = self.state.ck, self.state.engine
        quick = self.main.quick  # the model still loads: stream on its exported graph (runtime.graphs) meanwhile
        if ck is None and not quick:
            self._on_status("no model loaded")
            return
        self.stop()
        self.choice_text = ""
        self.user_stopped = False  # after stop(): this start is the user's (or a retry's)
        spec = self.source.currentText().strip()
        # remembered now (a window closed while it opens keeps it); a source that fails to open is taken back
        self.source_before = self.main.settings_value("source", "", str)
        self.main.set_setting("source", spec)
        short = self.state.image_size
        self.status.setText(f"opening {spec}…")
        self.stats.setText("starting…")
        if self.latest is None:
            self.view.setText(f"starting {spec}…")
        self.start_btn.setEnabled(False)

        def prepare():
            source, shape = self._open(spec)
            if ck is None:
                return (spec, source, *self._graph_predictor(quick, short, shape), None)
            size = fit_size(shape[:2], short, ck.vit.patch_size)
            key = (id(ck), size)
            predictor = self.predictors.get(key)
            cached = None
            if predictor is None:  # the safe backend at once, from the model already built for Photos
                from highlighter.runtime.predictor import TorchPredictor, cached_choice

                predictor = TorchPredictor(ck, size, "fp32", model=engine.model)
                cached = cached_choice(ck, size)  # a file read: torch fp32 chosen before needs no job at all
            return spec, source, key, predictor, cached

        self.job.start(prepare)

    @staticmethod
    def _open(spec: str):
        """(the opened source, its frames' (H, W)); raises when it cannot be opened or has no frames."""
        source = open_source(spec, loop=True)
        shape = source.frame_shape
        if shape is None:
            first = next(iter(source), None)
            if first is None:
                source.close()
                raise RuntimeError(f"{spec}: no frames")
            shape = first.image.shape
        return source, tuple(shape[:2])

    @staticmethod
    def _graph_predictor(model: str, short: int, shape):
        """A quick start's (graph, predictor): ONNX Runtime fp32 on the graph exported from this model file for
        this size (the same model: its masks match torch fp32's), or (None, None) when there is none or it does
        not load. Imports no torch."""
        from highlighter.runtime.ort import OrtPredictor

        graph = graphs.find(model, short, shape)
        if graph is None:
            return None, None
        try:
            predictor = OrtPredictor(graph.onnx, graph.patch_size, "ort-fp32")
        except Exception:  # noqa: BLE001 - a damaged graph, an older ONNX Runtime: the model road will do
            return None, None
        return graph, predictor

    def _started(self, result) -> None:
        spec, source, key, predictor, cached = result
        self.start_btn.setEnabled(True)
        if self.user_stopped:  # Stop was pressed while it opened
            source.close()
            return
        quick = predictor is None or isinstance(key, graphs.Graph)
        if quick and self.main.quick is None and self.state.ck is not None:
            source.close()  # the model landed while the source opened: start on it, the normal road
            self.start()
            return
        if predictor is None:  # a quick start without a graph for this size: the stream starts with the model
            source.close()
            self.start_when_loaded = True
            self.main.load_first_now()  # nothing to wait for
            self.stats.setText("starting…")
            self.status.setText(f"{spec}: loading the model; the stream starts when it is loaded")
            return
        if isinstance(key, graphs.Graph):  # the stream's key is ("graph", size) until the model takes it
            self.graph, key = key, ("graph", key.image_size)
        self.key = key
        self.pipeline = FramePipeline(predictor, self.settings)
        fps = getattr(source, "fps", 0.0) if not getattr(source, "is_camera", True) else 0.0
        if fps == 0.0 and source.total:
            fps = 25.0  # image folders play at 25 fps
        self.runner = LiveRunner(source, self.pipeline, self._on_result, self.relay.status.emit, paced_fps=fps)
        self.frames_shown, self.t_start = 0, time.perf_counter()
        self.runner.start()
        self.description = source.description
        H, W = predictor.image_size
        if key[0] == "graph":
            self.status.setText(f"{source.description}: backend {predictor.name} at {H}x{W} on the model's exported "
                                "graph while the model loads; then the fastest backend is chosen")
        elif cached is not None and cached["chosen"] == "torch-fp32":
            self._chosen((key, predictor, cached, True))
        elif key in self.predictors:
            self.choice_text = self.choice_texts.get(key, "")
            self.status.setText(self.choice_text)
        else:
            self.status.setText(f"{source.description}: backend {predictor.name} at {H}x{W}; choosing the fastest "
                                "backend in the background…")
            self.choose_pending = True  # from the first frame on: the choice must not delay it
        if self._needs_tokens():
            self._ensure_tokens()
        self._stream_started()
        self._attach_compare()

    def _choose(self) -> None:
        """The background choice for the stream's model and size (one at a time; a newer stream asks again)."""
        if self.choice_job.busy or self.runner is None or self.key in self.predictors:
            return
        key, ck, size = self.key, self.state.ck, self.key[1]
        cancel = self.cancel_choice = threading.Event()
        self.choosing = key

        spec = str(demo_clip()) if demo_clip().exists() else self.source.currentText().strip()

        def frames():  # the backends are compared on the bundled clip
            clip = open_source(spec)
            try:
                return [f.image for _, f in zip(range(3), clip)]
            finally:
                clip.close()

        def choose():
            from highlighter.runtime.predictor import auto_predictor

            return key, *auto_predictor(ck, size, frames, repeats=2, log=lambda m: None, cancel=cancel)

        self.choice_job.start(choose)

    def _chosen(self, result) -> None:
        from highlighter.runtime.predictor import ChoiceWatch, choice_age

        key, predictor, report, cached = result
        self.predictors[key] = predictor
        H, W = predictor.image_size
        entry = report.get(report["chosen"], {})
        how = f"chosen on an earlier start, {choice_age(report)}" if cached else "measured now"
        if entry.get("agrees") == "maps":  # near-flat maps: the masks' boundary moves, the maps are the same
            why = (f"the fastest whose maps agree with fp32, r {entry.get('map_r', 1.0):.4f}; its masks differ on "
                   f"near-flat maps, IoU {entry.get('mean_iou', 1.0):.3f}")
        else:
            why = f"the fastest whose masks agree with fp32, IoU {entry.get('mean_iou', 1.0):.3f}"
        self.choice_texts[key] = f"{self.description}: backend {predictor.name} at {H}x{W} ({why}; {how})"
        self.choice_watch = ChoiceWatch(report) if cached else None  # a kept choice far off its time: measure again
        if self.runner is not None and key == self.key:
            self.pipeline.predictor = predictor  # the inference thread takes it from its next frame
            self.choice_text = self.choice_texts[key]
            self.status.setText(self.choice_text)
            if self._needs_tokens():
                self._ensure_tokens()  # an ONNX choice gives no patch tokens
            if cached and predictor.name.startswith("torch"):  # no graph was needed, so none may exist yet
                QTimer.singleShot(GRAPH_EXPORT_DELAY_MS, self, lambda k=key: self._export_graph(k))
        if self.quit_when_chosen:
            self._quit_now_chosen(f"backend {predictor.name} chosen and saved")
            return
        self._choose()  # the stream moved on (another size or model) while this one was chosen

    def _export_graph(self, key) -> None:
        """Export (once) the graph of the streamed model file at this size, in the background, so that the next
        start of the app streams before torch is imported (``runtime.graphs``). A measured choice has made it
        already; a choice read from disk that kept torch had not."""
        ck = self.state.ck
        if self.runner is None or key != self.key or ck is None or not ck.path:
            return
        from highlighter.runtime.predictor import file_unchanged

        if not file_unchanged(ck):  # rewritten since it was loaded (a run still training): the graph would
            return  # hold the loaded weights under the new content's name
        if getattr(self, "graph_job", None) is None:
            self.graph_job = Job(self._graph_exported, self._graph_failed)  # methods: the relay is our child

        def export():
            from highlighter.runtime.predictor import onnx_for

            onnx_for(ck, key[1], log=lambda m: None)  # a file that exists is only recorded in the index

        self.graph_job.start(export)

    def _choice_failed(self, message: str) -> None:
        cancelled = isinstance(self.choice_job.error, Cancelled)
        if not cancelled and self.runner is not None and self.choosing == self.key:
            self.predictors[self.key] = self.pipeline.predictor  # settled: not tried again for this stream
            self.status.setText(f"{self.status.text().removesuffix('…')}: the choice failed ({message}); staying "
                                "on torch fp32")
        if self.quit_when_chosen:
            self._quit_now_chosen(f"the backend choice failed ({message})")
            return
        self._choose()

    def _failed(self, message: str) -> None:
        self.main.load_first_now()  # a quick start whose source did not open: the model need not wait
        if self.source_before:  # a failed choice is never saved: the next start opens the last good source
            self.main.set_setting("source", self.source_before)
        else:
            self.main.qsettings.remove("source")
        self.start_btn.setEnabled(True)
        self.stats.setText("stopped")
        if self.latest is None:
            self.view.setText("Press Start")
        self._on_status(message)
        if self.quit_after is not None:  # a timed run has nobody to pick another source: report and quit
            self._report_failure_and_quit(message)
            return
        self._maybe_retry()

    def _report_failure_and_quit(self, message: str) -> None:
        """``--quit-after N`` whose source failed: its JSON line with the error, and a non-zero exit code."""
        print(json.dumps({"error": message, "frames": self.frames_shown,
                          "source": self.source.currentText().strip(),
                          "window_s": round(self.main.t_window - self.launched, 3),
                          "model_loaded": self.state.ck is not None}), flush=True)
        self.quit_after = None
        self.main.exit_code = 2
        self.cancel_choice.set()
        QTimer.singleShot(0, self.main.close)

    def _is_camera(self) -> bool:
        return self.source.currentText().strip().isdigit()

    def _maybe_retry(self) -> None:
        """A camera that is unplugged or busy is tried again every 3 s until Stop (files loop instead)."""
        if self._is_camera() and not self.user_stopped:
            self.status.setText(self.status.text() + " — retrying in 3 s (Stop to give up)")
            self.retry.start()

    def _retry(self) -> None:
        if not self.user_stopped:
            self.start()

    def _on_result(self, res) -> None:  # inference thread: keep only the newest, wake the GUI once
        self.latest = res
        if not self._pending:
            self._pending = True
            self.relay.result.emit()

    def _show_latest(self) -> None:
        self._pending = False
        res = self.latest
        if res is None:
            return
        now = time.perf_counter()
        self.view.setPixmap(fit(rgb_to_pixmap(res.overlay), self.view.width(), self.view.height()))
        self.view.picture_size, self.shown = res.overlay.shape[:2], res  # what a click on the view maps to
        self._show_second(res)
        self.state.latest_frame = res.frame
        self.frames_shown += 1
        if self.first_frame_t is None:
            self.first_frame_t = time.monotonic()
            self.first_backend = self.pipeline.predictor.name
            self.torch_at_first_frame = "torch" in sys.modules  # a quick start has not imported it yet
            self.main.load_first_now()  # a quick start: the model loads now, beside the stream
        if self.recorder is not None:
            # a full queue drops, never waits; the time places the frame in the file (real-speed playback)
            self.writer.submit(self.recorder.write, res.overlay, now - self.record_t0, block=False)
        dt = now - self.t_start
        if self.frames_shown % 5 == 0 and dt > 0:
            t = res.timings
            dropped = self.runner.slot.dropped if self.runner else 0
            self.stats.setText(f"{self.frames_shown / dt:.1f} fps   model {t['model_ms']:.1f} ms   end-to-end "
                               f"{t.get('latency_ms', 0):.1f} ms   dropped {dropped}")
            if "track_ms" in t:  # the propagation runs in the frame's time: the fps counts it
                self.stats.setText(self.stats.text() + f"   tracking {t['track_ms']:.1f} ms")
            if res.compare is not None:  # one frame is both models' passes
                self.stats.setText(self.stats.text() + f"   (each frame through both models; the second's "
                                   f"{res.compare.timings['model_ms']:.1f} ms)")
        if self.frames_shown == 1:
            self.t_first_shown = now
            self.stats.setText("streaming (fps after 5 frames)")
        if self.choose_pending:
            self.choose_pending = False
            self._choose()
        if self.choice_watch is not None and res.timings.get("model_ms") and self.key in self.predictors:
            line = self.choice_watch.add(res.timings["model_ms"])
            if line:
                self._measure_again(line)
        if self.quit_after is not None and self.frames_shown == self.quit_after:
            self._report_and_quit(now)

    def _measure_again(self, line: str) -> None:
        """The kept choice's backend runs far from the time it was chosen with: drop it and choose again."""
        from highlighter.runtime.predictor import forget_choice

        self.choice_watch = None
        if self.state.ck is not None and self.key[0] != "graph":
            forget_choice(self.state.ck, self.key[1])
        self.predictors.pop(self.key, None)
        self.status.setText(f"{self.description}: {line}…")
        self._choose()

    def _report_and_quit(self, now: float) -> None:
        """``--quit-after N``: one JSON line on stdout, then the window closes."""
        n = self.frames_shown
        report = {"first_frame_s": round(self.first_frame_t - self.launched, 3),
                  "window_s": round(self.main.t_window - self.launched, 3), "frames": n,
                  "fps": round((n - 1) / (now - self.t_first_shown), 2) if n > 1 and now > self.t_first_shown else 0.0,
                  "backend": self.pipeline.predictor.name, "image_size": list(self.pipeline.predictor.image_size),
                  "first_backend": self.first_backend, "torch_at_first_frame": self.torch_at_first_frame,
                  "model_loaded": self.state.ck is not None,
                  "choice": ("cached" if "earlier start" in self.choice_text else "measured" if self.choice_text
                             else "pending"),
                  "source": self.description}
        print(json.dumps(report), flush=True)
        self.quit_after = None
        waits = (["the model to finish loading"] if self.main.first_model_pending else []) + (
            ["the backend choice to be measured and saved"] if self.choice_job.busy or self.main.first_model_pending
            else [])
        if waits:  # let the choice be saved: the next start needs none; say so, the process does not end yet
            self.quit_when_chosen = True
            self.t_report = time.monotonic()
            print(f"quit-after: waiting for {' and '.join(waits)} (so that the next start needs no choice); Ctrl-C "
                  "stops waiting for the choice", file=sys.stderr, flush=True)
            self.status.setText(self.status.text() + " (quitting once the choice is saved)")
        else:
            QTimer.singleShot(0, self.main.close)

    def _quit_now_chosen(self, outcome: str) -> None:
        print(f"quit-after: {outcome} after {time.monotonic() - self.t_report:.1f} s more; exiting", file=sys.stderr,
              flush=True)
        QTimer.singleShot(0, self.main.close)

    # ------------------------------------------------------------------ patch features: PCA and boxes
    def _feature_controls(self) -> QHBoxLayout:
        """The box checkbox and the pca overlay's controls (background removal, Refit)."""
        self.box = QCheckBox("Box")
        self.box.setToolTip("draw the box of the mask's largest connected component")
        self.box.toggled.connect(lambda on: setattr(self.settings, "box", on))
        self.pca_controls = PCAControls(with_refit=True)
        self.pca_controls.changed.connect(self._set_pca)
        self.pca_controls.refit.connect(self.refit_pca)
        row = QHBoxLayout()
        row.addWidget(self.box)
        row.addWidget(QLabel("PCA overlay:"))
        row.addWidget(self.pca_controls)
        self._similarity_controls(row)
        row.addStretch(1)
        return row

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
        ck, size, old = self.state.ck, pipe.predictor.image_size, pipe.predictor.name
        if ck is None:  # a quick start's graph, the model still loading: the choice that follows swaps it in
            self.status.setText("the PCA overlay starts once the model is loaded (the graph gives no patch tokens)")
            return

        def make():
            from highlighter.runtime.predictor import make_predictor

            return pipe, old, make_predictor("torch-fp32", ck, size, log=lambda m: None)

        if getattr(self, "tokens_job", None) is None:
            self.tokens_job = Job(self._swap_predictor, self._on_status)  # a method: its relay is this tab's child
        self.tokens_job.start(make)

    def _graph_exported(self, _result) -> None:
        pass

    def _graph_failed(self, message: str) -> None:
        self.status.setText(f"could not export the graph for the next quick start: {message}")

    def _swap_predictor(self, result) -> None:
        pipe, old, pred = result
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
            self.status.setText(f"this frame's patch features were not kept ({self.pipeline.predictor.name}); "
                                "they are from the next frames on: click again")
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

    def _on_status(self, message: str) -> None:
        self.status.setText(message)
        if self.runner is not None and self.runner.end is StreamEnd.CAMERA_LOST:
            self._maybe_retry()

    def _restart(self, *_):
        if self.runner is not None:
            self.start()

    def stop(self) -> None:
        self.user_stopped = True
        self.choose_pending = False
        self.start_when_loaded = False
        self.retry.stop()
        self.cancel_choice.set()  # a choice still measuring gives up before its next backend
        if self.runner is not None:
            self.runner.stop()
            self.runner = None
            self.stats.setText("stopped")
        if self.record.isChecked():
            self.record.setChecked(False)

    def close_writer(self) -> None:
        """Finish the files still being written (the window calls this when it closes)."""
        self.stop()
        self.writer.close()

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
        from highlighter.video.pipeline import FramePipeline as Pipe

        H, W = pipe.predictor.image_size
        size = fit_size((H, W), self.state.image_size, engine.ck.vit.patch_size)

        def build():
            from highlighter.runtime.predictor import TorchPredictor

            return pipe, engine, Pipe(TorchPredictor(engine.ck, size, "fp32", model=engine.model), self.settings)

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

    # ------------------------------------------------------------------ saving, on the writer's thread
    def _folder(self) -> Path:
        return Path(self.main.settings_value("snapshot_dir", str(Path.home() / "highlighter-snapshots"), str))

    def snapshot(self) -> list[Path]:
        """Save the frame, the mask and the overlay as PNGs; returns the paths they are being written to."""
        res = self.latest
        if res is None:
            return []
        paths = snapshot_paths(self._folder(), res.index)
        if not self.writer.submit(write_snapshot, paths, res.frame, res.shown_mask, res.overlay, block=False,
                                  on_done=lambda p: self.relay.status.emit(
                                      f"saved {p[2].name} and its frame and mask in {p[2].parent}")):
            self.status.setText("still writing the previous files; snapshot skipped")
            return []
        return paths

    def _record(self, on: bool) -> None:
        """A toggle: Record / Stop recording. The file is written at the stream's measured rate, and each frame
        is placed by the time it was shown (repeated or skipped to keep time), so it plays at real speed."""
        if on and self.latest is not None:
            path = self._folder() / (time.strftime("%Y%m%d-%H%M%S") + "_overlay.mp4")
            h, w = self.latest.overlay.shape[:2]
            dt = time.perf_counter() - self.t_start
            measured = self.frames_shown / dt if dt > 0 and self.frames_shown else RECORD_FPS
            self.recorder = Recorder(path, min(RECORD_FPS, max(RECORD_MIN_FPS, round(measured))), (w, h))
            self.record_t0 = time.perf_counter()  # the file's time 0: a frame shown t s later goes at t
            self.writer.submit(self.recorder.open)
            self.record.setText("Stop recording")
            self.status.setText(f"recording to {path} at {self.recorder.fps:g} fps")
        elif on:
            self.record.setChecked(False)
            self.status.setText("start the stream before recording")
        elif self.recorder is not None:
            recorder, self.recorder = self.recorder, None
            if self.latest is not None:  # the file lasts until Stop was pressed: its last slot ends then
                t_end = time.perf_counter() - self.record_t0 - 1.0 / recorder.fps
                self.writer.submit(recorder.write, self.latest.overlay, max(0.0, t_end))
            self.record.setText("Record")
            self.status.setText(f"finishing {recorder.path}…")
            self.writer.submit(recorder.close, on_done=lambda _: self.relay.status.emit(
                f"recording saved: {recorder.path} ({recorder.frames} frames, {recorder.duration:.1f} s at "
                f"{recorder.fps:g} fps)"))
        else:
            self.record.setText("Record")
