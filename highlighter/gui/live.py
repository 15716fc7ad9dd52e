"""The Live tab: a camera, video file or image folder streamed through the fastest backend.

What it shows follows the app state (model, overlay, heads, mass kept, resolution: ``gui.controls``); the
frames run through ``video.pipeline.LiveRunner`` (capture and inference threads, latest frame wins); Record
and Snapshot hand the files to ``video.writer.Writer``, off the GUI thread.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QTimer, Signal
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

from highlighter.gui.controls import StateControls
from highlighter.gui.features_panel import PCAControls
from highlighter.gui.qt_util import Job, fit, rgb_to_pixmap
from highlighter.paths import demo_clip
from highlighter.preprocess import fit_size
from highlighter.video.pipeline import FramePipeline, LiveRunner, Settings
from highlighter.video.sources import list_cameras, open_source
from highlighter.video.writer import Recorder, Writer, snapshot_paths, write_snapshot

RECORD_FPS = 25.0


class _Relay(QObject):
    result = Signal()
    status = Signal(str)


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
        self.relay = _Relay(self)  # a child: deleted with the tab, on the GUI thread
        self.relay.result.connect(self._show_latest)
        self.relay.status.connect(self._on_status)
        self.job = Job(self._started, self._failed)

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
        self.view = QLabel("Press Start")
        self.view.setAlignment(Qt.AlignmentFlag.AlignCenter)
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
        lay.addWidget(self.view, 1)
        lay.addWidget(self.stats)
        lay.addWidget(self.status)

        subs = [(state.threshold_changed, self._set_threshold), (state.overlay_changed, self._set_overlay),
                (state.heads_changed, self._set_heads), (state.image_size_changed, self._restart),
                (state.model_changed, self.model_changed)]
        for signal, callback in subs:
            signal.connect(callback)
        self.destroyed.connect(lambda *_: [signal.disconnect(callback) for signal, callback in subs])

    # ------------------------------------------------------------------ following the state
    def model_changed(self, *_) -> None:
        self.predictors.clear()
        self.settings.heads = self.state.heads
        if self.runner is not None:
            self._restart()

    def _set_threshold(self, value: float) -> None:
        self.settings.threshold = value

    def _set_overlay(self, name: str) -> None:
        self.settings.overlay = name
        if name == "pca":
            self._ensure_tokens()

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
        ck = self.state.ck
        if ck is None:
            self._on_status("no model loaded")
            return
        self.stop()
        self.user_stopped = False  # after stop(): this start is the user's (or a retry's)
        spec = self.source.currentText().strip()
        self.main.set_setting("source", spec)
        short = self.state.image_size
        self.status.setText(f"starting {spec}: choosing the fastest backend…")
        self.start_btn.setEnabled(False)

        def prepare():
            source = open_source(spec, loop=True)
            demo = []
            if demo_clip().exists():  # the backends are compared on the bundled clip
                clip = open_source(str(demo_clip()))
                demo = [f.image for _, f in zip(range(3), clip)]
                clip.close()
            if not demo:
                demo = [f.image for _, f in zip(range(3), source)]
            size = fit_size(source.frame_shape or demo[0].shape[:2], short, ck.vit.patch_size)
            key = (id(ck), size)
            if key not in self.predictors:
                from highlighter.runtime.predictor import choose_backend

                self.predictors[key] = choose_backend(ck, size, demo, repeats=2, log=lambda m: None)
            return source, self.predictors[key]

        self.job.start(prepare)

    def _started(self, result) -> None:
        source, (predictor, report) = result
        self.start_btn.setEnabled(True)
        self.pipeline = FramePipeline(predictor, self.settings)
        fps = getattr(source, "fps", 0.0) if not getattr(source, "is_camera", True) else 0.0
        if fps == 0.0 and source.total:
            fps = 25.0  # image folders play at 25 fps
        self.runner = LiveRunner(source, self.pipeline, self._on_result, self.relay.status.emit, paced_fps=fps)
        self.frames_shown, self.t_start = 0, time.perf_counter()
        self.runner.start()
        agree = report[report["chosen"]]
        H, W = predictor.image_size
        self.status.setText(f"{source.description}: backend {predictor.name} at {H}x{W} (fastest whose masks "
                            f"agree with fp32, IoU {agree['mean_iou']:.3f})")
        if self.settings.overlay == "pca":
            self._ensure_tokens()

    def _failed(self, message: str) -> None:
        self.start_btn.setEnabled(True)
        self._on_status(message)
        self._maybe_retry()

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
        self.view.setPixmap(fit(rgb_to_pixmap(res.overlay), self.view.width(), self.view.height()))
        self.state.latest_frame = res.frame
        self.frames_shown += 1
        if self.recorder is not None:
            self.writer.submit(self.recorder.write, res.overlay, block=False)  # a full queue drops, never waits
        dt = time.perf_counter() - self.t_start
        if self.frames_shown % 5 == 0 and dt > 0:
            t = res.timings
            dropped = self.runner.slot.dropped if self.runner else 0
            self.stats.setText(f"{self.frames_shown / dt:.1f} fps   model {t['model_ms']:.1f} ms   end-to-end "
                               f"{t.get('latency_ms', 0):.1f} ms   dropped {dropped}")

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

        def make():
            from highlighter.runtime.predictor import make_predictor

            return pipe, old, make_predictor("torch-fp32", ck, size, log=lambda m: None)

        if getattr(self, "tokens_job", None) is None:
            self.tokens_job = Job(self._swap_predictor, self._on_status)  # a method: its relay is this tab's child
        self.tokens_job.start(make)

    def _swap_predictor(self, result) -> None:
        pipe, old, pred = result
        pipe.predictor = pred  # read once per frame by the inference thread
        self.status.setText(f"PCA needs the patch tokens, which {old} does not give: now on {pred.name}")

    def _on_status(self, message: str) -> None:
        self.status.setText(message)
        if self.runner is not None and "camera" in message and "stopped" in message:
            self._maybe_retry()

    def _restart(self, *_):
        if self.runner is not None:
            self.start()

    def stop(self) -> None:
        self.user_stopped = True
        self.retry.stop()
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

    # ------------------------------------------------------------------ saving, on the writer's thread
    def _folder(self) -> Path:
        return Path(self.main.settings_value("snapshot_dir", str(Path.home() / "highlighter-snapshots"), str))

    def snapshot(self) -> list[Path]:
        """Save the frame, the mask and the overlay as PNGs; returns the paths they are being written to."""
        res = self.latest
        if res is None:
            return []
        paths = snapshot_paths(self._folder(), res.index)
        if not self.writer.submit(write_snapshot, paths, res.frame, res.mask, res.overlay, block=False,
                                  on_done=lambda p: self.relay.status.emit(
                                      f"saved {p[2].name} and its frame and mask in {p[2].parent}")):
            self.status.setText("still writing the previous files; snapshot skipped")
            return []
        return paths

    def _record(self, on: bool) -> None:
        if on and self.latest is not None:
            path = self._folder() / (time.strftime("%Y%m%d-%H%M%S") + "_overlay.mp4")
            h, w = self.latest.overlay.shape[:2]
            self.recorder = Recorder(path, RECORD_FPS, (w, h))
            self.writer.submit(self.recorder.open)
            self.status.setText(f"recording to {path}")
        elif on:
            self.record.setChecked(False)
            self.status.setText("start the stream before recording")
        elif self.recorder is not None:
            recorder, self.recorder = self.recorder, None
            self.writer.submit(recorder.close, on_done=lambda _: self.relay.status.emit(
                f"recording saved: {recorder.path} ({recorder.frames} frames)"))
