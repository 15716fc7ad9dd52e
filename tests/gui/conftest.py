"""Every GUI test ends with no job thread running and its windows collected on this (the GUI) thread, so the
next test's worker threads never run a garbage collection that destroys an old window (see MainThreadGC)."""

import gc

import pytest


@pytest.fixture(autouse=True)
def _windows_end_on_the_gui_thread():
    yield
    try:
        from highlighter.gui.qt_util import wait_for_jobs
    except ImportError:  # no Qt: the test module has already skipped or failed
        return
    wait_for_jobs(60.0)
    gc.collect()
