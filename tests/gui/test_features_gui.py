"""The PCA panel (Photos), the pca overlay and the box (Live), under pytest-qt: assertions on what is shown."""

from pathlib import Path

import numpy as np
import pytest
from needs import qt

qt()  # a skip on a developer's machine without the gui extra, a failure in CI
from PySide6.QtCore import Qt  # noqa: E402

from highlighter.features import pca_rgb, pca_rgb_foreground  # noqa: E402
from highlighter.render import BOX_COLOUR, overlay  # noqa: E402

pytestmark = pytest.mark.gui
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture
def window(open_window, cache, monkeypatch):
    monkeypatch.setenv("HIGHLIGHTER_CACHE", str(cache))  # the ONNX exports are shared by the module's tests
    return open_window(size=(1400, 800))


def shown(label) -> np.ndarray:
    """The RGB pixels a QLabel's pixmap shows."""
    img = label.pixmap().toImage().convertToFormat(label.pixmap().toImage().Format.Format_RGB888)
    w, h = img.width(), img.height()
    rows = np.frombuffer(img.constBits(), np.uint8, img.bytesPerLine() * h).reshape(h, -1)
    return rows[:, :3 * w].reshape(h, w, 3).copy()  # a copy: the array must outlive the QImage it reads


def test_photos_pca_panel_shows_the_tokens_pca_without_a_model_call(window, qtbot, cat_path):
    tab = window.photos
    tab.add_paths([str(cat_path)])
    qtbot.waitUntil(lambda: tab.current_result() is not None and tab.pca_panel.colours is not None, timeout=20000)
    res, panel = tab.current_result(), tab.pca_panel
    assert res.tokens.shape == (14 * 21, 192)
    np.testing.assert_array_equal(panel.colours, pca_rgb(res.tokens, res.grid))
    pix = shown(panel.view)
    assert abs(pix.shape[1] / pix.shape[0] - 21 / 14) < 0.02  # the whole patch grid, its aspect kept
    cell = pix.shape[0] / 14  # one patch on screen: its centre shows the patch's colour
    for i, j in ((0, 0), (7, 10), (13, 20)):
        want = np.round(panel.colours[i, j] * 255)
        got = pix[int((i + 0.5) * cell), int((j + 0.5) * cell)].astype(float)
        assert np.abs(got - want).max() <= 12, (i, j, got, want)
    calls, before = tab.model_calls, pix.copy()
    # background removal, as the DINOv2 demo: the cut and the flip redraw from the cached tokens
    panel.controls.background.setChecked(True)
    panel.controls.threshold.setValue(40)
    want_rgb, want_fg = pca_rgb_foreground(res.tokens, res.grid, 0.4)
    np.testing.assert_array_equal(panel.colours, want_rgb)
    assert 0 < want_fg.mean() < 1 and panel.controls.threshold_label.text() == "cut 0.40"
    after = shown(panel.view)
    assert after.shape == before.shape and not np.array_equal(after, before)
    i, j = np.argwhere(~want_fg)[0]
    assert after[int((i + 0.5) * cell), int((j + 0.5) * cell)].max() <= 12  # a background patch is black
    panel.controls.flip.setChecked(True)
    np.testing.assert_array_equal(panel.shown_patches, pca_rgb_foreground(res.tokens, res.grid, 0.4, True)[1])
    # the pca overlay mode draws the panel's colours over the photo
    window.state.set_overlay("pca")
    want = overlay("pca", res.image, panel.colours, panel.shown_patches)
    got = shown(tab.mask_view)
    assert abs(got.shape[1] / got.shape[0] - want.shape[1] / want.shape[0]) < 0.02
    assert tab.model_calls == calls == 1


def independent_pca(tokens: np.ndarray, grid) -> np.ndarray:
    """DINOv2's PCA picture restated with an SVD (the code under test uses eigh of the scatter matrix): the first
    three right singular vectors, each signed so that its largest loading is positive, min-max per channel."""
    x = tokens.astype(np.float64) - tokens.astype(np.float64).mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    comps = vt[:3] * np.sign(vt[np.arange(3), np.abs(vt[:3]).argmax(1)])[:, None]
    proj = x @ comps.T
    return ((proj - proj.min(0)) / (proj.max(0) - proj.min(0))).reshape(*grid, 3)


def largest_component_box(mask: np.ndarray) -> list[int] | None:
    """[x0, y0, x1, y1] (end exclusive) of the largest 8-connected component, by a plain flood fill (the code
    under test uses OpenCV's connected components)."""
    seen, best = np.zeros(mask.shape, bool), []
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        seen[start], todo, comp = True, [start], []
        while todo:
            y, x = todo.pop()
            comp.append((y, x))
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    v, u = y + dy, x + dx
                    if 0 <= v < mask.shape[0] and 0 <= u < mask.shape[1] and mask[v, u] and not seen[v, u]:
                        seen[v, u] = True
                        todo.append((v, u))
        best = max(best, comp, key=len)
    if not best:
        return None
    ys, xs = zip(*best)
    return [min(xs), min(ys), max(xs) + 1, max(ys) + 1]


def test_save_all_writes_pca_and_boxes(window, qtbot, tmp_path, cat_path):
    import json

    from PIL import Image

    tab = window.photos
    tab.add_paths([str(cat_path)])
    qtbot.waitUntil(lambda: tab.current_result() is not None, timeout=20000)
    tab.save_all(str(tmp_path / "saved"))
    qtbot.waitUntil(lambda: window.statusBar().currentMessage().startswith("saved 1 result"), timeout=20000)
    got = np.load(tmp_path / "saved" / "chelsea_cat.npz")
    want = independent_pca(tab.current_result().tokens, (14, 21))
    np.testing.assert_allclose(got["pca"], want, atol=1e-4)
    # the PNG: each patch's colour, 8 bits, nearest-upsampled by the patch size (16) over the 224 x 336 input
    png = np.asarray(Image.open(tmp_path / "saved" / "chelsea_cat_pca.png").convert("RGB")).astype(int)
    assert png.shape == (14 * 16, 21 * 16, 3)
    assert np.abs(png[::16, ::16] - np.round(want * 255)).max() <= 1
    assert (png == np.repeat(np.repeat(png[::16, ::16], 16, 0), 16, 1)).all()
    # the box: the fused mask's largest 8-connected component, in the photo's pixels (the grid covers it whole)
    box = json.loads((tmp_path / "saved" / "boxes.json").read_text())["chelsea_cat"]
    x0, y0, x1, y1 = largest_component_box(got["fused_mask"].astype(bool))
    W, H = Image.open(cat_path).size
    sx, sy = W / 21, H / 14
    assert box == [round(x0 * sx), round(y0 * sy), round(x1 * sx), round(y1 * sy)]
    assert 0 < got["fused_mask"].sum() < got["fused_mask"].size  # a real mask: the box is neither empty nor all


def test_live_pca_overlay_box_and_refit(window, qtbot):
    live = window.live
    live.source.setCurrentText(str(ROOT / "assets" / "cockatoo_320x180_5s.mp4"))
    window.state.set_overlay("pca")
    live.box.setChecked(True)
    assert live.settings.overlay == "pca" and live.settings.box
    live.start()
    # whichever backend was fastest, the pca overlay runs on one that gives the patch tokens
    qtbot.waitUntil(lambda: live.latest is not None and live.latest.pca is not None, timeout=90000)
    assert live.pipeline.predictor.supports_tokens
    qtbot.waitUntil(lambda: live.pipeline.pca_fitted_on >= 5, timeout=30000)
    basis = live.pipeline.pca_basis
    n = live.frames_shown
    qtbot.waitUntil(lambda: live.frames_shown >= n + 3, timeout=30000)
    assert live.pipeline.pca_basis is basis  # kept: the colours do not flicker
    res = live.latest
    assert res.box is not None
    x0, y0, x1, y1 = res.box
    assert tuple(res.overlay[y0, (x0 + x1) // 2]) == BOX_COLOUR  # the box is drawn on what is shown
    assert not live.view.pixmap().isNull()
    live.pca_controls.refit_btn.click()
    assert "afresh" in live.status.text()
    qtbot.waitUntil(lambda: live.pipeline.pca_basis is not basis, timeout=30000)
    live.pca_controls.background.setChecked(True)
    assert live.settings.pca_background and live.settings.pca_threshold == 0.5
    live.box.setChecked(False)
    assert not live.settings.box
    live.stop()


def test_live_pca_swaps_a_backend_without_tokens_for_torch(window, qtbot, monkeypatch):
    """When the fastest backend is an ONNX graph (attention only), choosing pca swaps in torch fp32 and says so."""
    import highlighter.runtime.predictor as rp

    class AttentionOnly(rp.TorchPredictor):
        supports_tokens = False  # what the ONNX Runtime graphs are like

    def choose(ck, size, frames, **kw):
        pred = AttentionOnly(ck, size, device="cpu")
        pred.name = "ort-fp32"
        return pred, {"chosen": "ort-fp32", "ort-fp32": {"mean_iou": 1.0, "ms": 1.0}}

    monkeypatch.setattr(rp, "choose_backend", choose)
    monkeypatch.setattr(rp, "cached_choice", lambda *a, **k: None)  # no choice from an earlier test's stream
    monkeypatch.setattr(rp, "remember_choice", lambda *a, **k: None)  # nor one left for a later test
    live = window.live
    live.source.setCurrentText(str(ROOT / "assets" / "cockatoo_320x180_5s.mp4"))
    live.start()
    # the stream starts on torch fp32 at once; the background choice then switches it to the "ONNX" backend
    qtbot.waitUntil(lambda: live.latest is not None and live.pipeline.predictor.name == "ort-fp32", timeout=60000)
    qtbot.waitUntil(lambda: live.latest.pca is None, timeout=10000)
    window.state.set_overlay("pca")  # from the shared controls, as a user would
    qtbot.waitUntil(lambda: "now on torch-fp32" in live.status.text(), timeout=30000)
    assert "ort-fp32 does not give" in live.status.text()
    qtbot.waitUntil(lambda: live.latest.pca is not None, timeout=30000)
    live.stop()


def test_clicking_a_patch_shows_its_similarity_and_matches_without_a_model_call(window, qtbot, photos, cat_path):
    from PySide6.QtCore import QPoint
    from PySide6.QtTest import QTest

    tab = window.photos
    others = [p for p in photos if p != cat_path][:2]
    tab.add_paths([str(p) for p in others])  # analysed one by one as they are selected: their features are cached
    qtbot.waitUntil(lambda: tab.gallery.count() == 2, timeout=20000)
    for row in range(2):
        tab.gallery.setCurrentRow(row)
        qtbot.waitUntil(lambda: tab.current_result() is not None, timeout=20000)
    tab.add_paths([str(cat_path)])
    qtbot.waitUntil(lambda: tab.gallery.count() == 3, timeout=20000)
    tab.gallery.setCurrentRow(2)
    qtbot.waitUntil(lambda: tab.current_result() is not None and tab.sim_panel.result is tab.current_result(),
                    timeout=20000)
    res, panel, calls = tab.current_result(), tab.sim_panel, tab.model_calls
    assert calls == 3 and panel.matches_text.text() == "Click a patch of the photo"
    before = shown(panel.view)
    # a real click on the photo: patch (row 5, column 12) of the 14 x 21 grid
    pix = panel.view.pixmap()
    x0, y0 = (panel.view.width() - pix.width()) / 2, (panel.view.height() - pix.height()) / 2
    sx, sy = pix.width() / res.grid[1], pix.height() / res.grid[0]  # one patch, on screen (the grid covers it)
    QTest.mouseClick(panel.view, Qt.MouseButton.LeftButton, pos=QPoint(round(x0 + 12.5 * sx), round(y0 + 5.5 * sy)))
    assert panel.index == 5 * 21 + 12
    f = res.tokens.astype(np.float64)
    cos = f @ f[panel.index] / np.linalg.norm(f, axis=1) / np.linalg.norm(f[panel.index])
    np.testing.assert_allclose(panel.similarity.ravel(), cos, atol=1e-5)
    assert not np.array_equal(shown(panel.view), before)
    # the best match in each other photo: numpy's argmax of the cosine over that photo's tokens
    assert [m[0] for m in panel.matches] == [p.name for p in others]
    for (name, idx, sim), p in zip(panel.matches, others):
        o = tab.cache[tab._key(str(p))].tokens.astype(np.float64)
        c = o @ f[panel.index] / np.linalg.norm(o, axis=1) / np.linalg.norm(f[panel.index])
        assert idx == int(np.argmax(c)) and abs(sim - c.max()) < 1e-5
        assert f"{name}: {sim:.2f}" in panel.matches_text.text()
    assert not panel.matches_view.pixmap().isNull()
    # the keys instead of the output tokens: another map, from the same cache
    panel.kind.setCurrentText("last-block keys")
    k = res.keys.astype(np.float64)
    ck = k @ k[panel.index] / np.linalg.norm(k, axis=1) / np.linalg.norm(k[panel.index])
    np.testing.assert_allclose(panel.similarity.ravel(), ck, atol=1e-5)
    assert "last-block keys" in panel.matches_text.text()
    assert tab.model_calls == calls  # every click and switch came from the cache
