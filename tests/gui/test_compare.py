"""Issue 13, parts 2 and 3 in the app: Live's click-to-compare (a clicked patch's similarity, frame after frame)
and two models side by side (Photos and Live). Assertions on what is shown, after real signals and clicks."""

from pathlib import Path

import numpy as np
import pytest
from needs import qt

qt()  # a skip on a developer's machine without the gui extra, a failure in CI
from PySide6.QtCore import QPoint, Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from highlighter.features import cosine_similarity_map, cosine_similarity_to  # noqa: E402
from highlighter.render import patch_box, similarity_overlay  # noqa: E402

pytestmark = pytest.mark.gui
ROOT = Path(__file__).resolve().parents[2]
CLIP = ROOT / "assets" / "cockatoo_320x180_5s.mp4"


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("HIGHLIGHTER_SETTINGS", str(tmp_path / "settings.ini"))
    monkeypatch.setenv("HIGHLIGHTER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    from highlighter.gui.live import LiveTab

    monkeypatch.setattr(LiveTab, "_choose", lambda self: None)  # stay on torch fp32: no backend choice
    return tmp_path


def open_window(qtbot, checkpoint="random:vit_tiny/16"):
    from highlighter.gui.app import MainWindow

    w = MainWindow(checkpoint=checkpoint, quiet=True)
    qtbot.addWidget(w)
    w.resize(1400, 860)
    w.show()
    w.state.set_image_size(112)  # small frames keep the tests short
    return w


def shown(label) -> np.ndarray:
    """The RGB pixels a QLabel's pixmap shows."""
    img = label.pixmap().toImage().convertToFormat(label.pixmap().toImage().Format.Format_RGB888)
    w, h = img.width(), img.height()
    rows = np.frombuffer(img.constBits(), np.uint8, img.bytesPerLine() * h).reshape(h, -1)
    return rows[:, :3 * w].reshape(h, w, 3).copy()  # a copy: the QImage goes


def fitted(label, rgb) -> np.ndarray:
    """What ``label`` shows when it shows ``rgb`` fitted to its size, as the app draws it."""
    from PySide6.QtWidgets import QLabel

    from highlighter.gui.qt_util import fit, rgb_to_pixmap

    probe = QLabel()
    probe.setPixmap(fit(rgb_to_pixmap(rgb), label.width(), label.height()))
    return shown(probe)


def count_calls(predictor) -> list:
    """Every model pass of ``predictor`` appends to the list returned."""
    calls = []
    for name in ("run", "run_tokens", "run_features"):
        inner = getattr(predictor, name)
        setattr(predictor, name, lambda blob, inner=inner: (calls.append(1), inner(blob))[1])
    return calls


def settle(qtbot, live) -> None:
    """Paused: wait until no frame is in flight any more."""
    n = -1
    while n != live.frames_shown:
        n = live.frames_shown
        qtbot.wait(700)


def view_point(view, frame_shape, x: float, y: float) -> QPoint:
    """Where the frame pixel (x, y) is on the view (the picture fitted and centred)."""
    pix = view.pixmap()
    s = pix.width() / frame_shape[1]
    return QPoint(round((view.width() - pix.width()) / 2 + x * s), round((view.height() - pix.height()) / 2 + y * s))


# ---------------------------------------------------------------- part 2: Live click-to-compare
def test_live_click_picks_a_patch_and_the_overlay_follows_its_similarity(env, qtbot):
    w = open_window(qtbot)
    live = w.live
    live.source.setCurrentText(str(CLIP))
    live.start()
    qtbot.waitUntil(lambda: live.frames_shown >= 1, timeout=90000)
    assert live.shown.tokens is None  # features are kept only when asked for
    live.compare_box.setChecked(True)
    assert live.settings.keep_features and "click a patch" in live.status.text()
    qtbot.waitUntil(lambda: live.shown.tokens is not None and live.shown.keys is not None, timeout=30000)
    live.pause_btn.setChecked(True)
    settle(qtbot, live)
    res, before = live.shown, shown(live.view)
    h, w_ = res.mask.shape
    H, W = res.frame.shape[:2]
    assert (h, w_) == (7, 12) and res.tokens.shape == (h * w_, 192)
    calls = count_calls(live.pipeline.predictor)
    pix = live.view.pixmap()
    letterbox = (QPoint(live.view.width() // 2, 1) if pix.height() < live.view.height() - 4
                 else QPoint(1, live.view.height() // 2))
    QTest.mouseClick(live.view, Qt.MouseButton.LeftButton, pos=letterbox)
    assert live.pick is None  # a click beside the picture picks nothing
    # a real click on patch (row 4, column 9) of the 7 x 12 grid
    QTest.mouseClick(live.view, Qt.MouseButton.LeftButton,
                     pos=view_point(live.view, res.frame.shape, (9.5) * W / w_, (4.5) * H / h))
    index = 4 * w_ + 9
    assert live.pick == (res, index)
    sim = cosine_similarity_map(res.tokens, index, (h, w_))
    want = fitted(live.view, similarity_overlay(res.frame, sim, patch_box(index, (h, w_), res.frame.shape)))
    got = shown(live.view)
    assert got.shape == want.shape and np.abs(got.astype(int) - want).max() <= 2
    assert not np.array_equal(got, before)
    assert "patch (4, 9)" in live.status.text() and "output tokens" in live.status.text()
    assert live.clear_sim.isEnabled()
    # the keys instead: the same patch, another reference, from the same cached frame
    live.sim_kind.setCurrentText("last-block keys")
    np.testing.assert_array_equal(live.pipeline.reference[1], res.keys[index])
    sim_k = cosine_similarity_map(res.keys, index, (h, w_))
    want = fitted(live.view, similarity_overlay(res.frame, sim_k, patch_box(index, (h, w_), res.frame.shape)))
    assert np.abs(shown(live.view).astype(int) - want).max() <= 2
    assert "last-block keys" in live.status.text()
    assert calls == []  # the click and the switch ran no model
    live.sim_kind.setCurrentText("output tokens")
    # the next frames: every patch against the picked patch's vector
    live.pause_btn.setChecked(False)
    qtbot.waitUntil(lambda: live.shown.index != res.index and live.shown.similarity is not None, timeout=30000)
    new = live.shown
    np.testing.assert_allclose(new.similarity, cosine_similarity_to(new.tokens, res.tokens[index], (h, w_)),
                               atol=1e-6)
    assert np.abs(shown(live.view).astype(int) - fitted(live.view, similarity_overlay(new.frame, new.similarity))
                  ).max() <= 2
    # Clear: the normal overlay again
    live.clear_sim.click()
    assert live.pipeline.reference is None and not live.clear_sim.isEnabled()
    assert live.status.text() == "back to the mask overlay"
    n = live.frames_shown
    qtbot.waitUntil(lambda: live.frames_shown >= n + 2, timeout=30000)
    assert live.shown.similarity is None
    w.close()
