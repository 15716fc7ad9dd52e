"""Issue 20: Ctrl-C and SIGTERM close the app as its close button does; --quit-after ends, and says what it waits
for, whatever happens to the source."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from needs import qt

qt()
pytestmark = pytest.mark.gui
ROOT = Path(__file__).resolve().parents[2]
CLIP = ROOT / "assets" / "cockatoo_320x180_5s.mp4"
TINY = "random:vit_tiny/16"


def app_env(tmp_path) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "HIGHLIGHTER_SETTINGS": str(tmp_path / "s.ini"), "HIGHLIGHTER_CACHE": str(tmp_path / "cache"),
            "QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path)}


def test_ctrl_c_closes_the_real_app_as_its_close_button_does(tmp_path):
    """Ctrl-C printed a KeyboardInterrupt traceback from a Qt slot and the window stayed up."""
    settings = tmp_path / "s.ini"
    p = subprocess.Popen([sys.executable, "-m", "highlighter", "gui", "--checkpoint", TINY, "--source", str(CLIP)],
                         env=app_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not settings.exists() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)  # the Live tab saves the source as it starts: the window and its loop are up
        assert settings.exists() and p.poll() is None, "the app did not start"
        assert "geometry" not in settings.read_text()  # saved by the close only
        time.sleep(1.0)  # the loop idles in C++ between frames: the signal must still get through
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    saved = settings.read_text()
    assert "geometry" in saved and f"source={CLIP}" in saved


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_the_start_up_warning_is_open_closes_the_app(tmp_path, signum):
    """`gui --checkpoint BAD --source MISSING` opens the "Model unavailable" dialog; SIGTERM and Ctrl-C then
    closed the window behind it, and the dialog's own loop kept the process up until it was killed."""
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(os.urandom(4096))
    settings, log = tmp_path / "s.ini", tmp_path / "err.txt"
    with open(log, "w") as err_file:
        p = subprocess.Popen([sys.executable, "-m", "highlighter", "gui", "--checkpoint", str(bad), "--source",
                              str(tmp_path / "missing.mp4")], env=app_env(tmp_path), stdout=subprocess.DEVNULL,
                             stderr=err_file, text=True)
        try:
            deadline = time.monotonic() + 240
            while "could not load" not in log.read_text() and p.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert p.poll() is None and "could not load" in log.read_text(), log.read_text()[-2000:]
            time.sleep(1.5)  # the dialog is up, in its own event loop
            p.send_signal(signum)
            p.wait(timeout=90)
        finally:
            if p.poll() is None:
                p.kill()
    err = log.read_text()
    assert p.returncode == 0, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert "geometry" in settings.read_text()  # closed through closeEvent: the settings were saved


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_closes_the_window_through_its_close_event(qtbot, gui_env, signum):
    """SIGTERM killed the app without saving anything (no settings file at all)."""
    from highlighter.gui.app import MainWindow
    from highlighter.gui.qt_util import CloseOnSignals

    w = MainWindow(checkpoint="random:vit_tiny/16", quiet=True)
    qtbot.addWidget(w)
    w.show()
    w.tabs.setCurrentIndex(2)
    closer = CloseOnSignals(w)
    try:
        os.kill(os.getpid(), signum)
        qtbot.waitUntil(lambda: not w.isVisible(), timeout=30000)
    finally:
        closer.restore()
    assert closer.received == signum
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the previous handlers are back
    saved = (gui_env / "settings.ini").read_text()
    assert "geometry" in saved and "tab=2" in saved  # what closeEvent saves


def test_quit_after_with_a_failing_source_prints_the_error_and_exits_non_zero(tmp_path):
    """--source nope.mp4 --quit-after 5 ran until it was killed and printed nothing."""
    r = subprocess.run([sys.executable, "-m", "highlighter", "gui", "--checkpoint", TINY, "--source",
                        str(tmp_path / "nope.mp4"), "--quit-after", "5"], env=app_env(tmp_path),
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 2, r.stderr[-3000:]
    lines = [x for x in r.stdout.splitlines() if x.strip()]
    assert len(lines) == 1, r.stdout
    got = json.loads(lines[0])
    assert "nope.mp4" in got["error"] and "no such file" in got["error"]
    assert got["frames"] == 0 and got["source"] == str(tmp_path / "nope.mp4")
    assert "Traceback" not in r.stderr


def test_quit_after_says_on_stderr_what_it_waits_for(qtbot, gui_env, capsys, monkeypatch):
    """After its JSON line the process lingered 10 to 42 s, silently, for the backend choice to be saved."""
    import threading

    import highlighter.runtime.predictor as predictor
    from highlighter.gui.app import MainWindow

    release = threading.Event()

    def slow_choice(ck, size, frames, **kw):  # a choice still measuring when the frames are counted
        release.wait(60)
        fp32 = predictor.make_predictor("torch-fp32", ck, size)
        return fp32, {"chosen": "torch-fp32", "torch-fp32": {"mean_iou": 1.0, "ms": 1.0}}, False

    monkeypatch.setattr(predictor, "auto_predictor", slow_choice)
    w = MainWindow(checkpoint=TINY, source=str(CLIP), quit_after=2, quiet=True)
    qtbot.addWidget(w)
    w.show()
    w.live.start()
    try:
        qtbot.waitUntil(lambda: w.live.quit_when_chosen, timeout=60000)
        out, err = capsys.readouterr()
        assert json.loads(out.strip().splitlines()[-1])["choice"] == "pending"
        assert "quit-after: waiting for the backend choice to be measured and saved" in err
        assert w.isVisible() and w.live.choice_job.busy  # it does wait: the choice is saved for the next start
    finally:
        release.set()
    qtbot.waitUntil(lambda: not w.isVisible(), timeout=60000)
    err = capsys.readouterr().err
    assert "quit-after: backend torch-fp32 chosen and saved after" in err and "exiting" in err
