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

from PySide6.QtCore import QTimer
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

from highlighter.defaults import LIVE_PREPROCESSING
from highlighter.errors import Cancelled
from highlighter.gui.controls import StateControls
from highlighter.gui.features_panel import _ClickView
from highlighter.gui.live_compare import CompareMixin
from highlighter.gui.live_features import FeaturesMixin
from highlighter.gui.live_saving import SavingMixin
from highlighter.gui.qt_util import Job, Relay, fit, rgb_to_pixmap
from highlighter.paths import demo_clip
from highlighter.runtime import graphs
from highlighter.video.pipeline import FramePipeline, LiveRunner, Settings, StreamEnd
from highlighter.video.session import (
    Choice,
    Origin,
    StreamKey,
    choose,
    clip_frames,
    export_graph,
    first_predictor,
    graph_predictor,
    open_stream,
)
from highlighter.video.sources import list_cameras
from highlighter.video.writer import Recorder, Writer

GRAPH_EXPORT_DELAY_MS = 20000  # a stream on torch exports its graph for the next quick start after this


class LiveTab(FeaturesMixin, CompareMixin, SavingMixin, QWidget):
    def __init__(self, main):
        super().__init__()
        self.main = main
        state = main.state
        self.state = state
        self.settings = Settings(threshold=state.threshold, overlay=state.overlay, heads=state.heads)
        self.preprocessing = LIVE_PREPROCESSING  # how frames are resized to the model (preprocess): the next start's
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
        self.key: StreamKey | None = None  # the running stream's model and size
        self.choosing = None  # the key that the background choice is for
        self.choice_watch = None  # runtime.predictor.ChoiceWatch over a kept choice's backend
        self.remeasure = False  # the next choice drops the kept one first (ChoiceWatch found it far off)
        self.retried_for = None  # the lost camera's runner a retry was armed for
        self.description = ""
        self.choice: Choice | None = None  # the running stream's backend choice (its line; --quit-after's "choice")
        self.choices: dict = {}  # per StreamKey, as self.predictors
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
        self.choices.clear()
        self.choice_watch = None
        self.settings.heads = self.state.heads
        if self.runner is not None and self.key is not None and self.key.on_graph:
            quick = self.main.quick
            graph = self.graph
            if (ck is not None and ck.path and quick and Path(ck.path).resolve() == Path(quick).resolve()
                    and (ck.vit.patch_size, ck.vit.num_heads) == (graph.patch_size, graph.num_heads)):
                # the graph was exported from this very file: the stream goes on
                self.key = StreamKey.for_model(ck, self.key.size, self.key.preprocessing)
                H, W = self.key.size
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
        self.choice, self.choice_watch = None, None
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

        how = self.preprocessing

        def prepare():
            source, shape = open_stream(spec)
            if ck is None:
                return (spec, source, *graph_predictor(quick, short, shape, how), None)
            # the safe backend at once, from the model already built for Photos, and a choice kept on disk
            return spec, source, *first_predictor(ck, engine.model, shape, short, self.predictors, how)

        self.job.start(prepare)

    def _started(self, result) -> None:
        spec, source, key, predictor, cached = result
        self.start_btn.setEnabled(True)
        if self.user_stopped:  # Stop was pressed while it opened
            source.close()
            return
        self.shown = None  # a click picks from this stream's frames only (Track, click-to-compare)
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
        if isinstance(key, graphs.Graph):  # the stream's key is on the graph until the model takes it
            self.graph, key = key, StreamKey.for_graph(key.image_size, predictor.preprocessing)
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
        if key.on_graph:
            self.status.setText(f"{source.description}: backend {predictor.name} at {H}x{W} on the model's exported "
                                "graph while the model loads; then the fastest backend is chosen")
        elif cached is not None and cached["chosen"] == "torch-fp32":
            self._chosen((key, predictor, Choice(predictor.name, predictor.image_size, Origin.CACHED, cached)))
        elif key in self.predictors:
            self.choice = self.choices.get(key)
            self.status.setText(self.choice.line(self.description) if self.choice else "")
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
        key, ck = self.key, self.state.ck
        cancel = self.cancel_choice = threading.Event()
        self.choosing = key
        spec = str(demo_clip()) if demo_clip().exists() else self.source.currentText().strip()
        forget, self.remeasure = self.remeasure, False  # the kept choice was far off: dropped in the job
        # the backends are compared on the bundled clip
        self.choice_job.start(lambda: choose(ck, key, lambda: clip_frames(spec), cancel, forget=forget))

    def _chosen(self, result) -> None:
        from highlighter.runtime.predictor import ChoiceWatch

        key, predictor, choice = result
        cached = choice.origin is Origin.CACHED
        self.predictors[key], self.choices[key] = predictor, choice
        if self.runner is not None and key == self.key:
            # a kept choice far off its recorded time is measured again (watched while its backend streams)
            self.choice_watch = ChoiceWatch(choice.report) if cached else None
            self.pipeline.predictor = predictor  # the inference thread takes it from its next frame
            self.choice = choice
            self.status.setText(choice.line(self.description))
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
        if getattr(self, "graph_job", None) is None:
            self.graph_job = Job(self._graph_exported, self._graph_failed)  # methods: the relay is our child
        self.graph_job.start(lambda: export_graph(ck, key.size))

    def _graph_exported(self, _result) -> None:
        pass

    def _graph_failed(self, message: str) -> None:
        self.status.setText(f"could not export the graph for the next quick start: {message}")

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
        watch, t = self.choice_watch, res.timings
        if (watch is not None and t.get("model_ms") and self.key in self.predictors
                and self.pipeline.predictor.name == watch.name):  # not a torch swapped in for tokens
            line = watch.add(t.get("preprocess_ms", 0.0) + t["model_ms"])  # as the choice timed a call
            if line:
                self._measure_again(line)
        if self.quit_after is not None and self.frames_shown == self.quit_after:
            self._report_and_quit(now)

    def _measure_again(self, line: str) -> None:
        """The kept choice's backend runs far from the time it was chosen with: drop it and choose again."""
        self.choice_watch = None
        self.remeasure = not self.key.on_graph  # the choice job drops the kept one (a file hash: off this thread)
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
                  "choice": (self.choice.origin if self.choice else Origin.PENDING).value,
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

    def _on_status(self, message: str) -> None:
        self.status.setText(message)
        runner = self.runner
        if runner is not None and runner.end is StreamEnd.CAMERA_LOST and self.retried_for is not runner:
            self.retried_for = runner  # once per lost stream, not at each later status line
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
