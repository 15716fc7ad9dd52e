"""Shared by the GUI tests: a window on a small random model with its settings, cache and home in the test's
folder; and every GUI test ends with no job thread running and its windows collected on this (the GUI) thread,
so the next test's worker threads never run a garbage collection that destroys an old window (see
MainThreadGC)."""

import gc

import pytest

TINY = "random:vit_tiny/16"


@pytest.fixture(autouse=True)
def _windows_end_on_the_gui_thread():
    yield
    try:
        from highlighter.gui.qt_util import wait_for_jobs
    except ImportError:  # no Qt: the test module has already skipped or failed
        return
    wait_for_jobs(60.0)
    gc.collect()


@pytest.fixture
def gui_env(tmp_path, monkeypatch):
    """Settings, the cache and HOME (snapshots, recordings, runs) in the test's folder."""
    monkeypatch.setenv("HIGHLIGHTER_SETTINGS", str(tmp_path / "settings.ini"))
    monkeypatch.setenv("HIGHLIGHTER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


@pytest.fixture
def open_window(qtbot, gui_env):
    """``open_window(tab=None, size=(1200, 800), checkpoint=TINY, **MainWindow kwargs)``: a shown window on that
    tab; its stream and training are stopped at the end."""
    from highlighter.gui.app import MainWindow

    opened = []

    def open_(tab: str | None = None, size=(1200, 800), checkpoint: str | None = TINY, **kw):
        w = MainWindow(checkpoint=checkpoint, quiet=True, **kw)
        qtbot.addWidget(w)
        w.resize(*size)
        w.show()
        if tab:
            w.tabs.setCurrentWidget(getattr(w, tab))
        opened.append(w)
        return w

    yield open_
    for w in opened:
        w.live.close_writer()
        w.train.stop()


@pytest.fixture
def window(open_window):
    """The window most tests use: the small random model, 1200x800, on the Live tab."""
    return open_window()
