"""The Train tab: runs `highlighter train` as a child process and follows its JSON events."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QProcess, Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from highlighter.gui.qt_util import FitLabel, ImageDialog
from highlighter.paths import RUN_CHECKPOINT


class TrainTab(QWidget):
    def __init__(self, main):
        super().__init__()
        self.main = main
        self.proc: QProcess | None = None
        self.buffer = b""
        self.stderr_tail: list[str] = []
        self.points: dict[str, tuple[list, list]] = {}

        self.folders = QListWidget()
        self.folders.setMaximumHeight(80)
        add, clear = QPushButton("Add folder…"), QPushButton("Clear")
        add.clicked.connect(self._add_folder)
        clear.clicked.connect(self.folders.clear)
        self.kind = QComboBox()
        self.kind.addItems(["dino", "mae"])
        self.preset = QComboBox()
        self.preset.addItems(["cpu-small", "small-data", "gpu"])
        self.epochs = QSpinBox(minimum=1, maximum=10000, value=30)
        self.probe_box = QCheckBox("objectness probe every")
        self.probe_box.setToolTip("score where the class token looks every few minutes, on photos with masks "
                                  "(a folder with images/ and masks/; default: the development eval sets)")
        self.probe_minutes = QSpinBox(minimum=1, maximum=600, value=10, suffix=" min")
        self.probe_dir = QLineEdit()
        self.probe_dir.setPlaceholderText("probe folder with images/ and masks/ (optional)")
        self.batch = QSpinBox(minimum=1, maximum=4096, value=32)
        self.out = QLineEdit(str(Path.home() / "highlighter-runs" / "run1"))
        browse = QPushButton("…")
        browse.clicked.connect(self._browse_out)
        self.start_btn, self.stop_btn, self.resume_btn, self.use_btn = (
            QPushButton("Start"), QPushButton("Stop"), QPushButton("Resume"), QPushButton("Use this model"))
        self.start_btn.clicked.connect(lambda: self.start(resume=False))
        self.resume_btn.clicked.connect(lambda: self.start(resume=True))
        self.stop_btn.clicked.connect(self.stop)
        self.use_btn.clicked.connect(self.use_model)
        self.stop_btn.setEnabled(False)
        self.progress = QProgressBar()
        self.eta = QLabel("")
        self.status = QLabel("Pick folders of photos, then Start.")
        self.status.setWordWrap(True)
        pg.setConfigOptions(antialias=True, background="w", foreground="k")
        self.loss_plot = pg.PlotWidget(title="loss")
        self.lr_plot = pg.PlotWidget(title="learning rate")
        self.collapse_plot = pg.PlotWidget(title="collapse monitor: teacher entropy / KL to uniform")
        self.collapse_plot.addLegend()
        self.curves = {
            "loss": self.loss_plot.plot(pen=pg.mkPen("#1f77b4", width=2)),
            "lr": self.lr_plot.plot(pen=pg.mkPen("#d62728", width=2)),
            "teacher_entropy": self.collapse_plot.plot(pen=pg.mkPen("#2ca02c", width=2), name="entropy"),
            "teacher_kl_uniform": self.collapse_plot.plot(pen=pg.mkPen("#9467bd", width=2), name="KL to uniform"),
        }
        # the objectness probe (--probe-every-minutes): mean attention inside the objects over outside, per set
        self.probe_plot = pg.PlotWidget(title="objectness probe: attention in/out (>1: on the objects)")
        self.probe_plot.addLegend()
        self.probe_plot.addItem(pg.InfiniteLine(pos=1.0, angle=0, pen=pg.mkPen("#888", style=Qt.PenStyle.DashLine)))
        self.probe_curves: dict[str, pg.PlotDataItem] = {}
        self.probe_points: dict[str, tuple[list, list]] = {}
        self.probe_source = ""
        for p in (self.loss_plot, self.lr_plot, self.collapse_plot, self.probe_plot):
            p.setLabel("bottom", "step")
            p.setMinimumHeight(150)
        # the preview PNG is large (about 2000 x 1000 with its captions): fitted here, full size on a click
        self.preview = FitLabel("attention previews appear here as checkpoints land", min_size=(200, 200))
        self.preview.clicked.connect(lambda *_: self.open_preview())
        self.preview_path = ""
        self.preview_dialog: ImageDialog | None = None

        form = QFormLayout()
        fl = QHBoxLayout()
        fl.addWidget(self.folders, 1)
        fb = QVBoxLayout()
        fb.addWidget(add)
        fb.addWidget(clear)
        fl.addLayout(fb)
        form.addRow("Folders", fl)
        opts = QHBoxLayout()
        for label, w in (("Method", self.kind), ("Preset", self.preset), ("Epochs", self.epochs),
                         ("Batch", self.batch)):
            opts.addWidget(QLabel(label))
            opts.addWidget(w)
        form.addRow(opts)
        ol = QHBoxLayout()
        ol.addWidget(self.out, 1)
        ol.addWidget(browse)
        form.addRow("Output folder", ol)
        pl = QHBoxLayout()
        pl.addWidget(self.probe_box)
        pl.addWidget(self.probe_minutes)
        pl.addWidget(self.probe_dir, 1)
        form.addRow("DINO", pl)
        buttons = QHBoxLayout()
        for b in (self.start_btn, self.stop_btn, self.resume_btn, self.use_btn):
            buttons.addWidget(b)
        plots = QHBoxLayout()
        for p in (self.loss_plot, self.lr_plot, self.collapse_plot, self.probe_plot):
            plots.addWidget(p)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addLayout(buttons)
        pr = QHBoxLayout()
        pr.addWidget(self.progress, 1)
        pr.addWidget(self.eta)
        lay.addLayout(pr)
        lay.addWidget(self.status)
        lay.addLayout(plots, 2)
        lay.addWidget(self.preview, 3)

    def _add_folder(self):
        path = QFileDialog.getExistingDirectory(self, "Folder of unlabeled photos")
        if path:
            self.folders.addItem(path)

    def _browse_out(self):
        path = QFileDialog.getExistingDirectory(self, "Output folder")
        if path:
            self.out.setText(path)

    def command(self, resume: bool) -> list[str]:
        folders = [self.folders.item(i).text() for i in range(self.folders.count())]
        args = ["-m", "highlighter", "train", self.kind.currentText(), "--data", *folders, "--out", self.out.text(),
                "--events", "--log-every", "1", "--preview-every", "50"]
        if resume:
            return [*args, "--resume"]
        probe = []
        if self.kind.currentText() == "dino" and self.probe_box.isChecked():
            probe = ["--probe-every-minutes", str(self.probe_minutes.value())]
            if self.probe_dir.text().strip():
                probe += ["--probe-data", self.probe_dir.text().strip()]
        return [*args, "--preset", self.preset.currentText(), "--epochs", str(self.epochs.value()),
                "--batch-size", str(self.batch.value()), *probe, *getattr(self, "extra_args", [])]

    def start(self, resume: bool = False) -> None:
        if self.proc is not None:
            return
        if not resume and self.folders.count() == 0:
            self.status.setText("Add at least one folder of photos first.")
            return
        if not resume:
            for c in self.curves.values():
                c.setData([], [])
            self.points = {}
            for c in self.probe_curves.values():
                c.setData([], [])
            self.probe_points = {}
        self.buffer, self.stderr_tail = b"", []
        self.proc = QProcess(self)
        self.proc.readyReadStandardOutput.connect(self._read_stdout)
        self.proc.readyReadStandardError.connect(self._read_stderr)
        self.proc.finished.connect(self._finished)
        self.proc.start(sys.executable, self.command(resume))
        self.start_btn.setEnabled(False)
        self.resume_btn.setEnabled(False)
        self.stop_btn.setEnabled(True)
        self.status.setText("starting…")

    def stop(self) -> None:
        if self.proc is not None:
            self.status.setText("stopping: saving a checkpoint…")
            self.proc.terminate()  # SIGTERM: the run saves a checkpoint and exits

    def _read_stdout(self) -> None:
        self.buffer += bytes(self.proc.readAllStandardOutput())
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            self.on_event(ev)

    def _read_stderr(self) -> None:
        text = bytes(self.proc.readAllStandardError()).decode(errors="replace")
        for line in text.replace("\r", "\n").splitlines():
            if line.strip() and "it/s" not in line and "step/s" not in line and "%|" not in line:
                self.stderr_tail = (self.stderr_tail + [line.strip()])[-20:]

    def on_event(self, ev: dict) -> None:
        kind = ev.get("event")
        if kind == "start":
            self.total = ev["total_steps"]
            self.progress.setMaximum(self.total)
            self.progress.setValue(ev["step"])
            self.status.setText(f"{ev['images']} images, {ev['epochs']} epochs x {ev['steps_per_epoch']} steps on "
                                f"{ev['device']} ({ev['precision']})")
        elif kind == "step":
            self.progress.setValue(ev["step"] + 1)
            eta = ev.get("eta_s", 0)
            self.eta.setText(f"{ev.get('img_s', 0):.1f} img/s, ETA {int(eta // 3600)}:{int(eta % 3600 // 60):02d}:"
                             f"{int(eta % 60):02d}")
            for key, curve in self.curves.items():
                if key in ev:
                    xs, ys = self.points.setdefault(key, ([], []))
                    xs.append(ev["step"])
                    ys.append(ev[key])
                    curve.setData(xs, ys)
        elif kind == "preview":
            pix = QPixmap(ev["path"])
            if not pix.isNull():
                self.preview_path = ev["path"]
                self.preview.set_source(pix)
                self.preview.setToolTip(f"step {ev.get('step')}: click to see it at full size ({pix.width()} x "
                                        f"{pix.height()})")
                self.preview.setCursor(Qt.CursorShape.PointingHandCursor)
        elif kind == "probe":
            self.on_probe(ev)
        elif kind == "checkpoint":
            self.status.setText(f"checkpoint saved at step {ev['step']} ({ev['reason']})")
        elif kind == "error":
            self.status.setText(ev.get("message", "error"))

    def open_preview(self) -> ImageDialog | None:
        """The latest preview at full size, scrollable, in a window of its own."""
        if self.preview.source.isNull():
            return None
        if self.preview_dialog is not None:
            self.preview_dialog.close()
        self.preview_dialog = ImageDialog(self, self.preview.source, f"Attention preview: {self.preview_path}")
        self.preview_dialog.show()
        return self.preview_dialog

    PROBE_COLOURS = ("#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")

    def on_probe(self, ev: dict) -> None:
        """One curve per probe folder: in/out at the first probed size, against the step."""
        self.probe_source = ev.get("source", "")
        self.probe_plot.setToolTip(self.probe_source)
        for name, per_size in ev.items():
            if not isinstance(per_size, dict) or name == "flat" or not per_size or \
                    not all(str(k).isdigit() for k in per_size):  # sets by size; not 'student' or 'knn'
                continue
            size = min(per_size, key=int)
            value = per_size[size].get("in_out")
            if value is None:
                continue
            label = f"{name} ({size} px)"
            if label not in self.probe_curves:
                colour = self.PROBE_COLOURS[len(self.probe_curves) % len(self.PROBE_COLOURS)]
                self.probe_curves[label] = self.probe_plot.plot(pen=pg.mkPen(colour, width=2), symbol="o",
                                                                symbolSize=5, symbolBrush=colour, name=label)
            xs, ys = self.probe_points.setdefault(label, ([], []))
            xs.append(ev["step"])
            ys.append(value)
            self.probe_curves[label].setData(xs, ys)

    def _finished(self, code: int, _status) -> None:
        self.proc = None
        self.eta.setText("")  # a stopped or finished run has no time left
        self.start_btn.setEnabled(True)
        self.resume_btn.setEnabled(True)
        self.stop_btn.setEnabled(False)
        errors = [line for line in self.stderr_tail if line.startswith("error:")]
        if code == 0:
            tail = self.stderr_tail[-1] if self.stderr_tail else "finished"
            self.status.setText(tail)
        else:
            message = errors[-1] if errors else (self.stderr_tail[-1] if self.stderr_tail else f"exit code {code}")
            self.status.setText(f"the run failed: {message}")
            if not self.main.quiet:
                QMessageBox.warning(self, "Training failed", message)

    def use_model(self) -> None:
        ck = Path(self.out.text()) / RUN_CHECKPOINT
        if not ck.exists():
            self.status.setText(f"no checkpoint yet in {ck.parent}")
            return
        self.main.state.request_model(str(ck), self.kind.currentText())  # the window or the MAE tab loads it
