"""numpy <-> Qt images, and running slow work off the GUI thread."""

from __future__ import annotations

import threading
import traceback

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
    exception"); a save would also be cut short."""

    def __init__(self, on_done, on_error):
        self.relay = _Relay()
        self.relay.done.connect(on_done)
        self.relay.failed.connect(on_error)
        self.busy = False

    def start(self, fn) -> bool:
        if self.busy:
            return False
        self.busy = True

        def work():
            try:
                result = fn()
            except Exception as e:  # noqa: BLE001 - shown to the user, the app stays up
                self.busy = False
                msg = str(e) if str(e) else type(e).__name__
                if not hasattr(e, "exit_code"):
                    msg = f"{type(e).__name__}: {msg}"
                    traceback.print_exc()
                self.relay.failed.emit(msg)
                return
            self.busy = False
            self.relay.done.emit(result)

        threading.Thread(target=work, name="job", daemon=False).start()
        return True
