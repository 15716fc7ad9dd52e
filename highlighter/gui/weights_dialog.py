"""The "Get official weights…" dialog: pick a released DINO, DINOv2, DINOv3 or MAE file, download it off the GUI
thread with a progress bar (or, for the gated DINOv3 files, check one the user downloaded), and hand the verified
file to the model picker (the work is in highlighter/weights.py, the same as `highlighter weights get`)."""

from __future__ import annotations

import threading

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
)

from highlighter.errors import HighlighterError
from highlighter.gui.qt_util import Relay

STEPS = 1000  # progress bar resolution


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


class WeightsDialog(QDialog):
    """Non-modal; one download at a time; closing it cancels a running download (the partial file stays,
    so the next Download resumes)."""

    downloaded = Signal(str)  # path of the verified file

    def __init__(self, parent=None):
        super().__init__(parent)
        from highlighter.catalogue import CATALOGUE

        self.setWindowTitle("Get official weights")
        self.resize(760, 480)
        self.relay = Relay(self)  # a child: deleted with the dialog, on the GUI thread
        self.relay.progress.connect(self._on_progress)
        self.relay.done.connect(self._on_done)
        self.relay.failed.connect(self._on_failed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shown_step = -1  # last progress step sent to the GUI (the worker sends only changes)

        self.list = QListWidget()
        for e in CATALOGUE.values():
            item = QListWidgetItem()
            item.setData(Qt.ItemDataRole.UserRole, e.name)
            self.list.addItem(item)
        self.list.currentItemChanged.connect(self._show_detail)
        self.detail = QLabel()
        self.detail.setWordWrap(True)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.mirror = QLineEdit()
        self.mirror.setPlaceholderText("optional: a mirror's scheme and host, e.g. https://mirror.example.org "
                                       "(the official path is kept)")
        self.progress = QProgressBar()
        self.progress.setRange(0, STEPS)
        self.progress.setValue(0)
        self.status = QLabel("Pick a file and press Download. Nothing is downloaded until you do.")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.get_button = QPushButton("Download")
        self.get_button.clicked.connect(self.start)
        self.file_button = QPushButton("Use a downloaded file…")
        self.file_button.setToolTip("check a file you downloaded yourself (the gated DINOv3 files) as this entry "
                                    "and keep a copy in the cache")
        self.file_button.clicked.connect(self.choose_file)
        self.cancel_button = QPushButton("Cancel download")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        close = QPushButton("Close")
        close.clicked.connect(self.close)

        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("Official weights (torch hub names); each is checked to load as its architecture "
                             "before it is kept:"))
        lay.addWidget(self.list, 1)
        lay.addWidget(self.detail)
        mirror_row = QHBoxLayout()
        mirror_row.addWidget(QLabel("Mirror:"))
        mirror_row.addWidget(self.mirror, 1)
        lay.addLayout(mirror_row)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for b in (self.get_button, self.file_button, self.cancel_button, close):
            buttons.addWidget(b)
        lay.addLayout(buttons)
        self.refresh()
        self.list.setCurrentRow(0)

    # ------------------------------------------------------------------ what is shown
    def refresh(self) -> None:
        """Label every entry with its architecture, size and whether it is in the cache (reads the disk)."""
        from highlighter.catalogue import CATALOGUE
        from highlighter.weights import local_path

        for i in range(self.list.count()):
            item = self.list.item(i)
            e = CATALOGUE[item.data(Qt.ItemDataRole.UserRole)]
            path = local_path(e)
            extra = f" + {e.registers} registers" if e.registers else " + decoder" if e.decoder else ""
            size = _size(path.stat().st_size) if path.is_file() else "~" + _size(e.estimated_bytes())
            state = ("downloaded" if path.is_file() else
                     "gated: accept the licence, then weights get NAME --file PATH" if e.gated else "not downloaded")
            item.setText(f"{e.name}  —  {e.family_name} {e.arch}{extra}, {size}  —  {state}")

    def entry(self):
        from highlighter.catalogue import CATALOGUE

        item = self.list.currentItem()
        return CATALOGUE[item.data(Qt.ItemDataRole.UserRole)] if item else None

    def select(self, name: str) -> None:
        for i in range(self.list.count()):
            if self.list.item(i).data(Qt.ItemDataRole.UserRole) == name:
                self.list.setCurrentRow(i)
                return
        raise KeyError(name)

    def _show_detail(self, *_):
        e = self.entry()
        if e is None:
            return
        check = f"published {e.checksum[0]} {e.checksum[1]}" if e.checksum else "none published"
        gated = (f"\nlicence: {e.licence}, to accept before download at {e.gated}; not downloaded here: "
                 f"*Use a downloaded file…* (or `highlighter weights get {e.name} --file PATH`) keeps the file you "
                 "downloaded" + (f"; or open {e.hub}" if e.hub else "")) if e.gated else ""
        self.detail.setText(f"{e.url}\nsource: {e.source}\nchecksum: {check}" + (f"\n{e.note}" if e.note else "")
                            + gated)

    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ the download
    def start(self) -> bool:
        """Start downloading the selected entry in a thread; False if busy or nothing to do."""
        from highlighter.weights import local_path, mirror_url

        e = self.entry()
        if e is None or self.busy():
            return False
        if local_path(e).is_file():
            self._set_status(f"{e.name} is already downloaded: {local_path(e)}")
            self.downloaded.emit(str(local_path(e)))
            return False
        if e.gated:
            self._set_status(f"error: {e.gated_message()}", error=True)
            return False
        mirror = self.mirror.text().strip() or None
        try:
            url = mirror_url(e.url, mirror)
        except HighlighterError as err:
            self._set_status(f"error: {err}", error=True)
            return False
        self._stop.clear()
        self._shown_step = -1
        self.progress.setRange(0, STEPS)
        self.progress.setValue(0)
        self.get_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.list.setEnabled(False)
        self._set_status(f"downloading {e.name} from {url}…")
        self._thread = threading.Thread(target=self._work, args=(e, mirror), daemon=True)
        self._thread.start()
        return True

    def choose_file(self) -> bool:
        from pathlib import Path

        e = self.entry()
        if e is None or self.busy():
            return False
        path, _ = QFileDialog.getOpenFileName(self, f"The downloaded {e.filename}", str(Path.home()),
                                              "Checkpoints (*.pth *.pt *.safetensors);;All files (*)")
        return self.use_file(path) if path else False

    def use_file(self, path: str) -> bool:
        """Check ``path`` as the selected entry (its published checksum, the architecture, a strict build) in a
        thread and keep a copy in the cache; False if busy or nothing is selected."""
        e = self.entry()
        if e is None or self.busy():
            return False
        self.progress.setRange(0, 0)  # hashing and loading: a busy bar
        self.get_button.setEnabled(False)
        self.file_button.setEnabled(False)
        self.list.setEnabled(False)
        self._set_status(f"checking {path} as {e.name}…")
        # not a daemon: a check still inside torch when the app quits is waited for, never cut short (Job's reason)
        self._thread = threading.Thread(target=self._adopt_work, args=(e, path), daemon=False)
        self._thread.start()
        return True

    def _adopt_work(self, entry, path) -> None:  # worker thread
        from highlighter.weights import adopt

        self._tell(lambda: adopt(entry, path))

    def _work(self, entry, mirror) -> None:  # worker thread: only signals touch the GUI
        from highlighter.weights import download

        self._tell(lambda: download(entry, mirror=mirror, progress=self._report, should_stop=self._stop.is_set))

    def _tell(self, fn) -> None:  # worker thread
        """Run ``fn`` and send its result or its error line to the dialog; nothing when the dialog has been deleted
        meanwhile (what was downloaded or checked stays in the cache)."""
        try:
            try:
                result = fn()
            except HighlighterError as e:
                self.relay.failed.emit(str(e))
            except Exception as e:  # noqa: BLE001 - shown in the dialog, the app stays up
                self.relay.failed.emit(f"{type(e).__name__}: {e}")
            else:
                self.relay.done.emit(result)
        except RuntimeError:  # the relay's C++ object is gone with the dialog
            pass

    def _report(self, done: int, total: int | None) -> None:  # worker thread
        step = done * STEPS // total if total else -2 - done // (1 << 20)  # no total: every MiB
        if step != self._shown_step:
            self._shown_step = step
            self.relay.progress.emit(done, total)

    def _on_progress(self, done: int, total: int | None) -> None:
        e = self.entry()
        if total:
            self.progress.setRange(0, STEPS)
            self.progress.setValue(min(STEPS, done * STEPS // total))
            if done >= total:
                self._set_status(f"checking that {e.name} loads as {e.describe()}…")
            else:
                self._set_status(f"downloading {e.name}: {done / 1e6:.1f} of {total / 1e6:.1f} MB")
        else:
            self.progress.setRange(0, 0)  # size unknown: a busy bar
            self._set_status(f"downloading {e.name}: {done / 1e6:.1f} MB")

    def _finish(self) -> None:
        self.get_button.setEnabled(True)
        self.file_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.list.setEnabled(True)
        self.refresh()

    def _on_done(self, result) -> None:
        ck = result.checkpoint
        self.progress.setRange(0, STEPS)
        self.progress.setValue(STEPS)
        resumed = f", resumed after {result.resumed_from / 1e6:.1f} MB" if result.resumed_from else ""
        self._set_status(f"verified: {result.entry.name} is a {ck.vit.describe()}"
                         f"{' with an MAE decoder' if ck.decoder else ''}{resumed}; saved to {result.path}")
        self._finish()
        self.downloaded.emit(str(result.path))

    def _on_failed(self, message: str) -> None:
        self.progress.setRange(0, STEPS)
        self.progress.setValue(0)
        self._set_status(f"error: {message}", error=True)
        self._finish()

    def _set_status(self, text: str, error: bool = False) -> None:
        self.status.setStyleSheet("color: #b00020;" if error else "")
        self.status.setText(text)

    def cancel(self) -> None:
        self._stop.set()

    def closeEvent(self, event):  # noqa: N802
        if self.busy():
            self.cancel()
            self._thread.join(5)
        super().closeEvent(event)
