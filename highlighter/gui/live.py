"""The Live tab: a camera, video file or image folder streamed through the fastest backend."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from highlighter.gui.qt_util import Job, fit, rgb_to_pixmap
from highlighter.paths import demo_clip
from highlighter.postprocess import mask_png
from highlighter.preprocess import DEFAULT_IMAGE_SIZE, fit_size
from highlighter.render import OVERLAYS
from highlighter.video.pipeline import FramePipeline, LiveRunner, Settings
from highlighter.video.sources import list_cameras, open_source, to_bgr

SIZES = (160, 224, 288, 384, 480)


class _Relay(QObject):
    result = Signal()
    status = Signal(str)


class LiveTab(QWidget):
    def __init__(self, main):
        super().__init__()
        self.main = main
        self.settings = Settings(threshold=main.settings_value("threshold", 0.6, float),
                                 overlay=main.settings_value("overlay", "mask", str))
        self.runner: LiveRunner | None = None
        self.predictors: dict = {}
        self.latest = None
        self._pending = False
        self.frames_shown = 0
        self.t_start = time.perf_counter()
        self.writer = None
        self.user_stopped = True
        self.retry = QTimer(self, singleShot=True, interval=3000)
        self.retry.timeout.connect(self._retry)
        self.relay = _Relay()
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
        self.overlay = QComboBox()
        self.overlay.addItems(OVERLAYS)
        self.overlay.setCurrentText(self.settings.overlay)
        self.overlay.currentTextChanged.connect(self._set_overlay)
        self.threshold = QSlider(Qt.Orientation.Horizontal, minimum=5, maximum=95)
        self.threshold.setValue(round(self.settings.threshold * 100))
        self.threshold.valueChanged.connect(self._set_threshold)
        self.threshold_label = QLabel()
        self.head = QComboBox()
        self.head.currentIndexChanged.connect(self._set_head)
        self.size = QComboBox()
        self.size.addItems([str(s) for s in SIZES])
        self.size.setCurrentText(str(DEFAULT_IMAGE_SIZE))
        self.size.setToolTip("the shorter side fed to the model, the aspect ratio kept (as in Photos)")
        self.size.currentTextChanged.connect(self._restart)
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
        grid = QGridLayout()
        grid.addWidget(QLabel("Overlay"), 0, 0)
        grid.addWidget(self.overlay, 0, 1)
        grid.addWidget(QLabel("Heads"), 0, 2)
        grid.addWidget(self.head, 0, 3)
        grid.addWidget(QLabel("Resolution"), 0, 4)
        grid.addWidget(self.size, 0, 5)
        grid.addWidget(self.smooth, 0, 6)
        grid.addWidget(self.threshold_label, 1, 0)
        grid.addWidget(self.threshold, 1, 1, 1, 4)
        grid.addWidget(snap, 1, 5)
        grid.addWidget(self.record, 1, 6)
        lay = QVBoxLayout(self)
        lay.addLayout(row1)
        lay.addLayout(grid)
        lay.addWidget(self.view, 1)
        lay.addWidget(self.stats)
        lay.addWidget(self.status)
        self._set_threshold(self.threshold.value())
        self.model_changed()

    # ------------------------------------------------------------------ controls
    def model_changed(self) -> None:
        ck = self.main.ck
        self.head.blockSignals(True)
        self.head.clear()
        self.head.addItem("Fused (mean of heads)")
        for i in range(ck.vit.num_heads if ck else 0):
            self.head.addItem(f"Head {i}")
        self.head.blockSignals(False)
        self.settings.head = None
        self.predictors.clear()
        if self.runner is not None:
            self._restart()

    def _browse_file(self):
        path, _ = QFileDialog.getOpenFileName(self, "Video or image", "", "Videos and images (*.mp4 *.avi *.mov "
                                              "*.mkv *.webm *.jpg *.jpeg *.png);;All files (*)")
        if path:
            self.source.setCurrentText(path)

    def _browse_dir(self):
        path = QFileDialog.getExistingDirectory(self, "Folder of images")
        if path:
            self.source.setCurrentText(path)

    def _set_threshold(self, v: int):
        self.settings.threshold = v / 100.0
        self.threshold_label.setText(f"Mass kept: {v}%")
        self.main.set_setting("threshold", self.settings.threshold)

    def _set_overlay(self, mode: str):
        self.settings.overlay = mode
        self.main.set_setting("overlay", mode)

    def _set_head(self, i: int):
        self.settings.head = None if i <= 0 else i - 1

    def _set_smoothing(self, on: bool):
        self.settings.smoothing = on

    def _pause(self, on: bool):
        if self.runner is not None:
            (self.runner.paused.set if on else self.runner.paused.clear)()

    # ------------------------------------------------------------------ running
    def start(self) -> None:
        if self.main.ck is None:
            self._on_status("no model loaded")
            return
        self.stop()
        self.user_stopped = False  # after stop(): this start is the user's (or a retry's)
        spec = self.source.currentText().strip()
        self.main.set_setting("source", spec)
        short = int(self.size.currentText())
        ck = self.main.ck
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
        self.status.setText(f"{source.description}: backend {predictor.name} (fastest whose masks agree with fp32, "
                            f"IoU {agree['mean_iou']:.3f})")

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
        self.frames_shown += 1
        if self.writer is not None:
            self.writer.write(to_bgr(cv2.resize(res.overlay, self._record_size)))
        dt = time.perf_counter() - self.t_start
        if self.frames_shown % 5 == 0 and dt > 0:
            t = res.timings
            dropped = self.runner.slot.dropped if self.runner else 0
            self.stats.setText(f"{self.frames_shown / dt:.1f} fps   model {t['model_ms']:.1f} ms   end-to-end "
                               f"{t.get('latency_ms', 0):.1f} ms   dropped {dropped}")

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

    # ------------------------------------------------------------------ saving
    def snapshot(self) -> list[Path]:
        res = self.latest
        if res is None:
            return []
        folder = Path(self.main.settings_value("snapshot_dir", str(Path.home() / "highlighter-snapshots"), str))
        folder.mkdir(parents=True, exist_ok=True)
        stem = time.strftime("%Y%m%d-%H%M%S") + f"-{res.index:05d}"
        paths = [folder / f"{stem}_frame.png", folder / f"{stem}_mask.png", folder / f"{stem}_overlay.png"]
        cv2.imwrite(str(paths[0]), to_bgr(res.frame))
        cv2.imwrite(str(paths[1]), mask_png(res.mask, res.frame.shape[:2]))
        cv2.imwrite(str(paths[2]), to_bgr(res.overlay))
        self.status.setText(f"saved {paths[2].name} and its frame and mask in {folder}")
        return paths

    def _record(self, on: bool) -> None:
        if on and self.latest is not None:
            folder = Path(self.main.settings_value("snapshot_dir", str(Path.home() / "highlighter-snapshots"), str))
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / (time.strftime("%Y%m%d-%H%M%S") + "_overlay.mp4")
            h, w = self.latest.overlay.shape[:2]
            self._record_size = (w, h)
            self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (w, h))
            self.status.setText(f"recording to {path}")
        elif on:
            self.record.setChecked(False)
            self.status.setText("start the stream before recording")
        elif self.writer is not None:
            self.writer.release()
            self.writer = None
            self.status.setText("recording saved")
