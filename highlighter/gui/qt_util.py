"""numpy <-> Qt images, and running slow work off the GUI thread."""

from __future__ import annotations

import gc
import os
import signal
import socket
import sys
import threading
import time
import traceback
import weakref

import numpy as np
from PySide6.QtCore import QObject, QRectF, QSocketNotifier, Qt, QTimer, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QApplication, QDialog, QGridLayout, QLabel, QScrollArea, QSizePolicy, QVBoxLayout, QWidget


def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def rgb_to_pixmap(rgb: np.ndarray) -> QPixmap:
    return QPixmap.fromImage(rgb_to_qimage(rgb))


def fit(pix: QPixmap, w: int, h: int) -> QPixmap:
    return pix.scaled(max(1, w), max(1, h), Qt.AspectRatioMode.KeepAspectRatio,
                      Qt.TransformationMode.SmoothTransformation)


def best_columns(n: int, width: int, height: int, aspect: float, caption: int = 0) -> int:
    """How many columns show ``n`` pictures of ``aspect`` (width / height) largest in a ``width`` x ``height``
    area, each with a ``caption`` px line above it."""
    best, best_side = 1, -1.0
    if n <= 0:
        return 1
    for cols in range(1, n + 1):
        rows = -(-n // cols)
        w = width / cols
        h = max(1.0, height / rows - caption)
        side = min(w, h * aspect)  # the picture's width once it fits its cell
        if side > best_side + 0.5:
            best, best_side = cols, side
    return best


class FitLabel(QLabel):
    """A picture that fills its label whatever the label's size: scaled keeping its aspect, smoothly, again
    on every resize, centred (``top``: centred across, at the top, so that a caption above stays with it).
    The label never asks for the picture's size, so layouts give it the space.
    ``clicked(u, v)``: where on the picture (0..1) a click landed."""

    clicked = Signal(float, float)

    def __init__(self, text: str = "", min_size: tuple[int, int] = (64, 48), top: bool = False):
        super().__init__(text)
        self.source = QPixmap()
        self.setAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop if top
                          else Qt.AlignmentFlag.AlignCenter)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.setMinimumSize(*min_size)

    def set_source(self, pix: QPixmap | None) -> None:
        """Show ``pix`` (None or a null pixmap: clear the picture and show the label's text)."""
        self.source = pix if pix is not None else QPixmap()
        if self.source.isNull():
            self.setPixmap(QPixmap())
        else:
            self._rescale()

    def _rescale(self) -> None:
        if not self.source.isNull():
            self.setPixmap(fit(self.source, self.width(), self.height()))

    def resizeEvent(self, event):  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._rescale()

    def shown_rect(self) -> QRectF:
        """Where the scaled picture is drawn in the label (centred across; down, centred or at the top)."""
        pix = self.pixmap()
        if pix is None or pix.isNull():
            return QRectF()
        top = bool(self.alignment() & Qt.AlignmentFlag.AlignTop)
        y = 0 if top else (self.height() - pix.height()) / 2
        return QRectF((self.width() - pix.width()) / 2, y, pix.width(), pix.height())

    def mousePressEvent(self, event):  # noqa: N802
        r = self.shown_rect()
        if r.isEmpty():
            return
        u = (event.position().x() - r.x()) / r.width()
        v = (event.position().y() - r.y()) / r.height()
        if 0 <= u < 1 and 0 <= v < 1:
            self.clicked.emit(u, v)


class FitGrid(QWidget):
    """Captioned pictures in as many columns as make them largest in the space they have (re-chosen on
    every resize)."""

    CAPTION = 20

    def __init__(self):
        super().__init__()
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(4)
        self.cells: list[tuple[QLabel, FitLabel]] = []
        self.aspect = 1.0
        self.columns = 0
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def add(self, caption: str, view: FitLabel | None = None) -> FitLabel:
        view = view or FitLabel(top=True)  # the picture right under its caption
        title = QLabel(caption)
        title.setFixedHeight(self.CAPTION - 2)
        self.cells.append((title, view))
        self.columns = 0  # lay out again
        self._relayout()
        return view

    def clear(self) -> None:
        for title, view in self.cells:  # gone from the screen now; deleted when the event loop next runs
            for w in (title, view):
                self.grid.removeWidget(w)
                w.hide()
                w.deleteLater()
        self.cells = []
        self.columns = 0

    def set_aspect(self, aspect: float) -> None:
        if abs(aspect - self.aspect) > 1e-3:
            self.aspect = aspect
            self._relayout()

    def views(self) -> list[FitLabel]:
        return [v for _, v in self.cells]

    def _relayout(self) -> None:
        cols = best_columns(len(self.cells), self.width(), self.height(), self.aspect, self.CAPTION)
        if cols == self.columns:
            return
        self.columns = cols
        for title, view in self.cells:
            self.grid.removeWidget(title)
            self.grid.removeWidget(view)
        for r in range(self.grid.rowCount()):
            self.grid.setRowStretch(r, 0)
        for i, (title, view) in enumerate(self.cells):
            r, c = divmod(i, cols)
            self.grid.addWidget(title, 2 * r, c)
            self.grid.addWidget(view, 2 * r + 1, c)
            self.grid.setRowStretch(2 * r + 1, 1)
        for c in range(self.grid.columnCount()):
            self.grid.setColumnStretch(c, 1 if c < cols else 0)

    def resizeEvent(self, event):  # noqa: N802
        super().resizeEvent(event)
        self._relayout()


class ImageDialog(QDialog):
    """A picture at its full size, scrollable."""

    def __init__(self, parent: QWidget, pix: QPixmap, title: str):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.image = QLabel()
        self.image.setPixmap(pix)
        self.scroll = QScrollArea()
        self.scroll.setWidget(self.image)
        lay = QVBoxLayout(self)
        lay.addWidget(self.scroll)
        screen = parent.screen().availableGeometry() if parent.screen() else None
        w, h = pix.width() + 40, pix.height() + 40
        if screen is not None:
            w, h = min(w, int(screen.width() * 0.9)), min(h, int(screen.height() * 0.9))
        self.resize(w, h)


class Relay(QObject):
    """Carries a worker thread's news to the GUI thread: a signal emitted from another thread is queued and its
    slots run on the thread of this object. Make it a child of the widget whose methods listen, so that Qt
    deletes it on the GUI thread with that widget. Each user connects the signals it needs."""

    done = Signal(object)  # a job's result
    failed = Signal(str)  # a job's error line
    status = Signal(str)  # a line for a status label
    result = Signal()  # "a new result is waiting" (the receiver takes the newest)
    progress = Signal(object, object)  # done, total or None (Python ints: files exceed 2 GB)


class MainThreadGC(QObject):
    """Python's cyclic garbage collector, run on the GUI thread only, while a window is open.

    Automatic collection runs in whichever thread happens to allocate. A closed window (or dialog) whose
    Python wrapper sits in a reference cycle is then destroyed by a worker thread (the live inference thread,
    a model load): the QWidget destructor takes Qt's locks there and waits for the GIL, while the GUI thread
    holds the GIL and waits for those locks, and the app hangs (seen in CI, a gdb trace: a QMenu destroyed
    from a worker's gc pass). So, while any window is open, automatic collection is off and a timer collects
    on the GUI thread instead, generation by generation, as pyqtgraph's GarbageCollector does."""

    _users = 0

    def __init__(self, parent: QObject, interval_ms: int = 1000):
        super().__init__(parent)
        self.active = False
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.check)
        self.timer.start(interval_ms)
        MainThreadGC._users += 1
        self.active = True
        gc.disable()

    def check(self) -> None:
        t0, t1, t2 = gc.get_threshold()
        c0, c1, c2 = gc.get_count()
        if c0 > t0:
            gc.collect(2 if c2 > t2 else 1 if c1 > t1 else 0)

    def stop(self) -> None:
        """The window closed: collect once more here, and give collection back to Python when no window is
        left."""
        if not self.active:
            return
        self.active = False
        self.timer.stop()
        gc.collect()
        MainThreadGC._users -= 1
        if MainThreadGC._users == 0:
            gc.enable()


class CloseOnSignals(QObject):
    """SIGINT (Ctrl-C in the terminal that started the app) and SIGTERM close ``window`` as its close button
    does: its closeEvent saves the settings, finalises a recording and stops a training child with its
    checkpoint, and the event loop then ends with exit code 0.

    A Python signal handler only runs when the interpreter runs, and Qt's event loop is C++: without help a
    SIGTERM waits (or kills the app when no handler is set), and Ctrl-C raised KeyboardInterrupt inside
    whichever Python slot ran next. So the C-level handler also writes to a socket (``signal.set_wakeup_fd``)
    that a QSocketNotifier watches: the loop wakes, and the Python handler runs before the notifier's slot. The
    handler only schedules the close (open dialogs first). A second signal while the window closes quits at
    once. Main thread only; ``restore()`` puts the previous handlers back."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, window: QWidget):
        super().__init__(window)
        self.window = window
        self.received: int | None = None
        self._read, self._write = socket.socketpair()
        for s in (self._read, self._write):
            s.setblocking(False)
        self._old_fd = signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)
        self._old = {sig: signal.signal(sig, self._handler) for sig in self.SIGNALS}
        self.notifier = QSocketNotifier(self._read.fileno(), QSocketNotifier.Type.Read, self)
        self.notifier.activated.connect(self._drain)

    def _handler(self, signum, frame) -> None:
        if self.received is not None:  # asked twice: the user does not want to wait for the close
            print(f"{signal.Signals(signum).name} again: quitting without waiting", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        self.received = signum
        QTimer.singleShot(0, self._close)

    def _close(self) -> None:
        """Close the open dialogs first (a modal one, such as the start-up "Model unavailable" warning, runs its
        own event loop and kept the app up after the window closed), then the window."""
        app = QApplication.instance()
        for _ in range(8):
            modal = app.activeModalWidget() if app is not None else None
            if modal is None or modal is self.window:
                break
            modal.reject() if isinstance(modal, QDialog) else modal.close()
        self.window.close()

    def _drain(self) -> None:
        try:
            while self._read.recv(64):
                pass
        except OSError:  # empty (BlockingIOError) or closed
            pass

    def restore(self) -> None:
        if self._old is None:
            return
        self.notifier.setEnabled(False)
        signal.set_wakeup_fd(self._old_fd)
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = None
        self._read.close()
        self._write.close()


class Job:
    """Run ``fn()`` in a thread; ``on_done(result)`` / ``on_error(message)`` run on the GUI thread, and ``error``
    holds the exception itself (branch on its type, never on the message).
    One job per Job object at a time: a second ``start`` while busy is refused (returns False).

    The thread is not a daemon: at exit the interpreter waits for a running job (a model load, a save)
    to finish. A daemon thread still inside torch when the interpreter finalizes is ended as it retakes
    the GIL, from a C++ destructor, and the process aborts ("terminate called without an active
    exception"); a save would also be cut short.

    The relay that carries the result back is a child of the widget that owns ``on_done``, so Qt deletes it
    on the GUI thread with that widget. Unparented, the worker could drop the last reference to it and run
    a QObject's destructor off its thread (undefined in Qt; seen as a hang when a window closed while its
    model was still loading). A window closing calls ``wait_for_jobs`` so that no job outlives it."""

    def __init__(self, on_done, on_error):
        owner = getattr(on_done, "__self__", None)
        self.relay = Relay(owner if isinstance(owner, QObject) else None)
        self.relay.done.connect(on_done)
        self.relay.failed.connect(on_error)
        self.busy = False
        self.error: BaseException | None = None  # the last run's exception: callers branch on its type
        self.thread: threading.Thread | None = None
        _JOBS.add(self)

    def start(self, fn) -> bool:
        if self.busy:
            return False
        # ``error`` is not reset here: a run that failed may be followed by a start before its failed signal
        # is delivered, and the handler must still read that run's exception
        self.busy = True
        relay = self.relay

        def emit(signal, value) -> None:
            try:
                signal(relay).emit(value)
            except RuntimeError:  # the window that asked was closed and deleted meanwhile: nobody to tell
                pass

        def work():
            try:
                result = fn()
            except Exception as e:  # noqa: BLE001 - shown to the user, the app stays up
                self.busy, self.error = False, e
                msg = str(e) if str(e) else type(e).__name__
                if not hasattr(e, "exit_code"):
                    msg = f"{type(e).__name__}: {msg}"
                    traceback.print_exc()
                emit(lambda r: r.failed, msg)
                return
            self.busy = False
            emit(lambda r: r.done, result)

        self.thread = threading.Thread(target=work, name="job", daemon=False)
        self.thread.start()
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the running job (if any) has finished; False if it is still running after ``timeout``.
        Its result is still delivered through the event loop, if its window is still there."""
        t = self.thread
        if t is not None and t.is_alive():
            t.join(timeout)
            return not t.is_alive()
        return True


_JOBS: weakref.WeakSet[Job] = weakref.WeakSet()


def wait_for_jobs(timeout: float = 30.0) -> bool:
    """Wait (up to ``timeout`` in all) for every running Job: a closing window leaves no thread behind."""
    deadline = time.monotonic() + timeout
    return all(job.wait(max(0.0, deadline - time.monotonic())) for job in list(_JOBS))
