"""The Live tab branches on types, not on the text of its messages: why a stream stopped, a cancelled choice."""

import pytest
from needs import qt

qt()
pytestmark = pytest.mark.gui


@pytest.mark.parametrize("end,retries", [("CAMERA_LOST", True), ("ENDED", False), ("SOURCE_FAILED", False)])
def test_a_lost_camera_is_retried_by_the_runners_reason_not_the_text(window, end, retries):
    """The tab retried when the status text held "camera" and "stopped"; it now reads the runner's StreamEnd."""
    from types import SimpleNamespace

    from highlighter.video.pipeline import StreamEnd

    live = window.live
    live.source.setCurrentText("0")  # a camera index
    live.user_stopped = False
    live.runner = SimpleNamespace(end=StreamEnd[end], stop=lambda *a, **k: None, join=lambda *a, **k: None)
    try:
        live._on_status("the device went away")
        assert live.retry.isActive() is retries
        assert ("retrying in 3 s" in live.status.text()) is retries
    finally:
        live.retry.stop()
        live.runner = None


def test_a_cancelled_choice_is_known_by_its_type(window, monkeypatch):
    """A choice cancelled because its stream stopped is no failure to show, whatever its message says."""
    from highlighter.errors import Cancelled

    live = window.live
    from types import SimpleNamespace

    from highlighter.video.session import StreamKey

    monkeypatch.setattr(live, "_choose", lambda: None)  # no new choice job for this made-up stream
    key = StreamKey("k", (1, 1))
    live.runner, live.choosing, live.key = object(), key, key
    live.pipeline = SimpleNamespace(predictor="torch fp32")
    live.status.setText("choosing")
    live.choice_job.error = Cancelled("stopped")  # as Job sets it before the failed signal
    try:
        live._choice_failed("stopped")
        assert "the choice failed" not in live.status.text()
        live.choice_job.error = RuntimeError("cancelled by the driver")  # the word alone decides nothing now
        live._choice_failed("cancelled by the driver")
        assert "the choice failed (cancelled by the driver)" in live.status.text()
    finally:
        live.runner = live.pipeline = None
        live.predictors.pop(key, None)


def test_the_kept_choice_watch_ignores_frames_of_another_backend(window, qtbot, monkeypatch):
    """A kept ONNX choice, then torch fp32 swapped in for the patch tokens (PCA, compare, Track): torch's times
    are not the ONNX backend's, and must not make the app drop the kept choice and measure again."""
    from pathlib import Path

    from highlighter.runtime.predictor import ChoiceWatch

    clip = Path(__file__).resolve().parents[2] / "assets" / "cockatoo_320x180_5s.mp4"
    live = window.live
    monkeypatch.setattr(live, "_choose", lambda: None)  # the stream stays on torch fp32
    window.state.set_image_size(112)
    live.source.setCurrentText(str(clip))
    live.start()
    qtbot.waitUntil(lambda: live.frames_shown >= 1, timeout=120000)
    live.predictors[live.key] = live.pipeline.predictor  # settled, as a kept choice leaves it
    watch = live.choice_watch = ChoiceWatch({"chosen": "ort-int8", "ort-int8": {"ms": 0.001}})
    n = live.frames_shown
    qtbot.waitUntil(lambda: live.frames_shown >= n + 25, timeout=120000)
    assert live.pipeline.predictor.name == "torch-fp32" and watch.times == [] and not live.remeasure
    assert "measuring the backends again" not in live.status.text()
    live.stop()
