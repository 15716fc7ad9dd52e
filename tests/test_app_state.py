"""The app's Qt-free state: events fire once per real change, invalid values are refused, callbacks go."""

import pytest

from highlighter.app_state import AppState, Signal
from highlighter.defaults import IMAGE_SIZE


def test_signal_connect_emit_disconnect():
    sig, got = Signal(), []
    sig.connect(got.append)
    sig.connect(got.append)  # once only
    sig.emit(1)
    sig.disconnect(got.append)
    sig.emit(2)
    assert got == [1] and len(sig) == 0


def test_events_fire_only_on_change_and_carry_the_value():
    state = AppState()
    assert (state.threshold, state.overlay, state.image_size, state.heads) == (0.6, "mask", IMAGE_SIZE, None)
    seen = []
    for name in ("threshold", "overlay", "image_size", "heads"):
        getattr(state, f"{name}_changed").connect(lambda v, n=name: seen.append((n, v)))
    state.set_threshold(0.6)  # unchanged: nothing
    state.set_threshold(0.42)
    state.set_overlay("contour")
    state.set_image_size(160)
    state.set_heads([1])
    state.set_heads((1,))  # the same heads
    state.set_heads([])  # empty means all heads
    assert seen == [("threshold", 0.42), ("overlay", "contour"), ("image_size", 160), ("heads", (1,)),
                    ("heads", None)]


def test_bad_values_are_refused_and_leave_the_state_as_it_was():
    state = AppState()
    with pytest.raises(ValueError, match="unknown overlay"):
        state.set_overlay("sparkles")
    with pytest.raises(ValueError, match="fraction"):
        state.set_threshold(0)
    assert state.overlay == "mask" and state.threshold == 0.6


def test_a_new_model_drops_heads_it_does_not_have():
    class Engine:
        num_heads, ck = 3, object()

    state = AppState(heads=[5])
    models = []
    state.model_changed.connect(models.append)
    engine = Engine()
    state.set_model("m.pth", engine)
    assert state.heads is None and models == [engine] and state.ck is engine.ck and state.model_spec == "m.pth"
