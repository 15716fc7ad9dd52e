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
def env(gui_env, monkeypatch):
    from highlighter.gui.live import LiveTab

    monkeypatch.setattr(LiveTab, "_choose", lambda self: None)  # stay on torch fp32: no backend choice
    return gui_env


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


def test_click_to_compare_on_an_attention_only_backend_swaps_in_torch(env, qtbot):
    """The ONNX graphs give no patch features: ticking Click to compare swaps in torch fp32 and says so, and a
    click on a frame without cached features asks for another click instead of running the model."""
    import highlighter.runtime.predictor as rp

    class AttentionOnly(rp.TorchPredictor):  # what the ONNX Runtime graphs are like
        supports_tokens = supports_keys = False

    w = open_window(qtbot)
    live = w.live
    live.source.setCurrentText(str(CLIP))
    live.start()
    qtbot.waitUntil(lambda: live.frames_shown >= 1, timeout=90000)
    pred = AttentionOnly(w.state.ck, live.pipeline.predictor.image_size, device="cpu")
    pred.name = "ort-fp32"
    live.pipeline.predictor = pred
    n = live.frames_shown
    qtbot.waitUntil(lambda: live.frames_shown >= n + 2, timeout=30000)
    res = live.shown
    assert res.tokens is None
    QTest.mouseClick(live.view, Qt.MouseButton.LeftButton, pos=view_point(live.view, res.frame.shape, 40, 40))
    assert live.pick is None and live.compare_box.isChecked()  # the click ticked it; nothing picked yet
    qtbot.waitUntil(lambda: "now on torch-fp32" in live.status.text(), timeout=30000)
    assert "Click-to-compare needs the patch tokens, which ort-fp32 does not give" in live.status.text()
    qtbot.waitUntil(lambda: live.shown.tokens is not None, timeout=30000)
    QTest.mouseClick(live.view, Qt.MouseButton.LeftButton, pos=view_point(live.view, live.shown.frame.shape, 40, 40))
    assert live.pick is not None and live.pipeline.reference is not None
    w.close()


# ---------------------------------------------------------------- part 3: two models side by side
def test_photos_compare_with_from_the_picker_shows_both_models_labelled(env, qtbot, monkeypatch, cat_path):
    from PySide6.QtWidgets import QInputDialog

    from highlighter.gui.app import COMPARE, STOP_COMPARE
    from highlighter.render import overlay

    w = open_window(qtbot)
    tab = w.photos
    w.tabs.setCurrentWidget(tab)
    tab.add_paths([str(cat_path)])
    qtbot.waitUntil(lambda: tab.current_result() is not None, timeout=30000)
    assert not tab.compare_panel.isVisible() and tab.titles[0].text() == "Overlay"
    asked = []
    monkeypatch.setattr(QInputDialog, "getItem", lambda parent, title, text, items, *a: (asked.append(items),
                        ("Untrained demo (random ViT-S/16)", True))[1])
    w.model_combo.activated.emit(w.model_combo.findData(COMPARE))  # the picker's entry, as a user picks it
    assert "Untrained demo (random ViT-S/16)" in asked[0] and "random:vit_tiny/16 (untrained)" not in asked[0]
    qtbot.waitUntil(lambda: tab.compare_result() is not None and "tiny" not in tab.compare_titles[0].text()
                    and tab.compare_mask_view.pixmap() is not None and not tab.compare_mask_view.pixmap().isNull(),
                    timeout=60000)
    assert w.model_combo.currentData() == "random:vit_tiny/16"  # the picker still names the first model
    assert w.compare_info.text() == "comparing with random:vit_small/16 (untrained)"
    assert tab.compare_panel.isVisible()
    assert tab.titles[0].text() == "Overlay — random:vit_tiny/16 (untrained)"
    assert tab.titles[1].text() == "Fused heatmap — random:vit_tiny/16 (untrained)"
    assert tab.compare_titles[0].text() == "Overlay — random:vit_small/16 (untrained)"
    assert tab.compare_titles[1].text() == "Fused heatmap — random:vit_small/16 (untrained)"
    res2 = tab.compare_result()
    assert res2.attention.shape[0] == 6 and tab.current_result().attention.shape[0] == 3
    want = overlay("mask", res2.image, res2.fused_map(None), res2.fused_mask("mass", 0.6, None))
    assert np.abs(shown(tab.compare_mask_view).astype(int) - fitted(tab.compare_mask_view, want)).max() <= 2
    before = [shown(v) for v in (tab.mask_view, tab.compare_mask_view)]
    w.state.set_threshold(0.25)  # one threshold for both models
    after = [shown(v) for v in (tab.mask_view, tab.compare_mask_view)]
    assert all(a.shape == b.shape and not np.array_equal(a, b) for a, b in zip(before, after))
    want = overlay("mask", res2.image, res2.fused_map(None), res2.fused_mask("mass", 0.25, None))
    assert np.abs(after[1].astype(int) - fitted(tab.compare_mask_view, want)).max() <= 2
    assert tab.model_calls == 1 and tab.compare_calls == 1  # the threshold redraws from the cache
    # Stop comparing: one model again
    w.model_combo.activated.emit(w.model_combo.findData(STOP_COMPARE))
    assert w.state.compare_engine is None and not tab.compare_panel.isVisible()
    assert tab.titles[0].text() == "Overlay" and w.compare_info.text() == ""
    assert w.model_combo.findData(STOP_COMPARE) < 0 and w.model_combo.findData(COMPARE) >= 0
    w.close()


def test_live_shows_both_models_side_by_side_and_the_fps_counts_both(env, qtbot):
    from highlighter.postprocess import fuse, mass_mask

    w = open_window(qtbot, checkpoint="random:vit_small/16")
    live = w.live
    live.source.setCurrentText(str(CLIP))
    live.start()
    qtbot.waitUntil(lambda: live.frames_shown >= 1, timeout=90000)
    assert not live.view2.isVisible() and not live.view_title.isVisible()
    assert w.compare_with("random:vit_tiny/16")  # the method the picker's entry ends in
    qtbot.waitUntil(lambda: live.shown.compare is not None, timeout=60000)
    assert live.view2.isVisible() and live.view_title.isVisible()
    assert live.view_title.text() == "random:vit_small/16 (untrained)"
    assert live.view2_title.text() == "random:vit_tiny/16 (untrained)"
    res = live.shown
    assert res.attention.shape[0] == 6 and res.compare.attention.shape[0] == 3 and res.compare.index == res.index
    assert np.abs(shown(live.view2).astype(int) - fitted(live.view2, res.compare.overlay)).max() <= 2
    n = live.frames_shown
    qtbot.waitUntil(lambda: live.frames_shown >= n + 5 and "both models" in live.stats.text(), timeout=60000)
    assert " fps " in live.stats.text()  # frames shown per second, each through both models
    w.state.set_threshold(0.3)  # the threshold and the heads apply to both
    qtbot.waitUntil(lambda: all(np.array_equal(r.mask, mass_mask(fuse(r.attention), 0.3))
                                for r in (live.shown, live.shown.compare)), timeout=30000)
    assert not np.array_equal(res.compare.mask, mass_mask(fuse(res.compare.attention), 0.3))  # it did change
    w.state.set_heads([4])  # the second model has 3 heads: its fused map, and its caption says so
    qtbot.waitUntil(lambda: live.shown.heads_used == (4,) and live.shown.compare.heads_used is None, timeout=30000)
    assert live.view2_title.text() == "random:vit_tiny/16 (untrained) (no head 4 in its 3: fused)"
    w.stop_comparing()
    assert not live.view2.isVisible() and live.pipeline.second is None
    n = live.frames_shown
    qtbot.waitUntil(lambda: live.frames_shown >= n + 2, timeout=30000)
    assert live.shown.compare is None
    w.close()
