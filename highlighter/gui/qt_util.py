"""numpy <-> Qt images, and running slow work off the GUI thread."""

from __future__ import annotations

import threading
import time
import traceback
import weakref

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QImage, QPixmap


def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def rgb_to_pixmap(rgb: np.ndarray) -> QPixmap:
    return QPixmap.fromImage(rgb_to_qimage(rgb))


def fit(pix: QPixmap, w: int, h: int) -> QPixmap:
    return pix.scaled(max(1, w), max(1, h), Qt.AspectRatioMode.KeepAspectRatio,
                      Qt.TransformationMode.SmoothTransformation)


class _Relay(QObject):
    done = Signal(object)
    failed = Signal(str)


class Job:
    """Run ``fn()`` in a thread; ``on_done(result)`` / ``on_error(message)`` run on the GUI thread.
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
        self.relay = _Relay(owner if isinstance(owner, QObject) else None)
        self.relay.done.connect(on_done)
        self.relay.failed.connect(on_error)
        self.busy = False
        self.thread: threading.Thread | None = None
        _JOBS.add(self)

    def start(self, fn) -> bool:
        if self.busy:
            return False
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
                self.busy = False
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
