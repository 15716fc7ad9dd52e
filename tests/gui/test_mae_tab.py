"""The MAE tab: squash or centre crop, panels sized to the space, the reconstruction's visible patches
dimmed and explained, a DINO file named as one, and a failed load that leaves the previous model's banner."""

import numpy as np
import pytest
import torch
from needs import qt
from PIL import Image

qt()
pytestmark = pytest.mark.gui


@pytest.fixture
def window(open_window, qtbot):
    w = open_window(tab="mae")
    qtbot.waitUntil(lambda: w.mae.engine is not None, timeout=30000)
    return w


def stripes() -> Image.Image:
    """300 x 100: red, green and blue thirds; the centre square is all green."""
    a = np.zeros((100, 300, 3), np.uint8)
    a[:, :100, 0] = a[:, 100:200, 1] = a[:, 200:, 2] = 255
    return Image.fromarray(a)


def colour_at(view, u, v):
    pix = view.pixmap()
    c = pix.toImage().pixelColor(int(u * (pix.width() - 1)), int(v * (pix.height() - 1)))
    return c.red(), c.green(), c.blue()


def test_squash_is_the_default_and_centre_crop_is_offered(window, qtbot):
    mae = window.mae
    assert mae.fit.currentData() == "squash"
    mae.set_image(stripes())
    qtbot.waitUntil(lambda: mae.result is not None, timeout=20000)
    original = mae.views[0]
    left, right = colour_at(original, 0.05, 0.5), colour_at(original, 0.95, 0.5)
    assert left[0] > 200 > left[1] and right[2] > 200 > right[1]  # the whole photo, squeezed
    first = mae.result
    mae.fit.setCurrentIndex(mae.fit.findData("crop"))
    qtbot.waitUntil(lambda: mae.result is not first, timeout=20000)
    for u in (0.05, 0.5, 0.95):
        r, g, b = colour_at(original, u, 0.5)
        assert g > 200 and r < 60 and b < 60  # only the centre square, in its proportions


def test_panels_are_as_large_as_the_space_allows(window, qtbot, cat_path):
    from highlighter.images import load_rgb

    mae = window.mae
    mae.set_image(load_rgb(cat_path))
    qtbot.waitUntil(lambda: mae.result is not None, timeout=20000)
    qtbot.wait(50)

    def side():
        return min(v.pixmap().width() for v in mae.views)

    assert mae.panels.columns == 4 and side() >= mae.panels.width() // 4 - 10  # one row, each a quarter wide
    wide = side()
    window.resize(900, 1100)  # tall: two by two shows them larger
    qtbot.waitUntil(lambda: mae.panels.columns == 2, timeout=5000)
    qtbot.waitUntil(lambda: side() > wide, timeout=5000)
    for v in mae.views:  # each panel touches two sides of its cell
        assert v.pixmap().width() >= v.width() - 2 or v.pixmap().height() >= v.height() - 2


def test_the_reconstructions_visible_patches_are_dimmed_and_explained(window, qtbot, cat_path):
    from highlighter.images import load_rgb
    from highlighter.preprocess import to_display
    from highlighter.render import DIMMED

    mae = window.mae
    mae.set_image(load_rgb(cat_path))
    qtbot.waitUntil(lambda: mae.result is not None, timeout=20000)
    res, view = mae.result, mae.views[2]
    shown = view.source.toImage()
    raw = to_display(res.views.reconstruction)
    p, g = mae.engine.ck.vit.patch_size, mae.engine.ck.vit.pos_grid
    visible, hidden = int(np.argmin(res.mask)), int(np.argmax(res.mask))

    def mean_shown(i):
        y, x = divmod(i, g)
        return np.mean([shown.pixelColor(x * p + dx, y * p + dy).green() for dx in range(p) for dy in range(p)])

    def mean_raw(i):
        y, x = divmod(i, g)
        return raw[y * p:(y + 1) * p, x * p:(x + 1) * p, 1].mean()

    assert mean_shown(visible) == pytest.approx(mean_raw(visible) * DIMMED, abs=1.0)
    assert mean_shown(hidden) == pytest.approx(mean_raw(hidden), abs=0.5)
    assert "dimmed" in mae.panels.cells[2][0].text()
    assert "never trained" in view.toolTip()


def test_a_dino_checkpoint_is_named_as_one(window, qtbot, tmp_path):
    from highlighter.core.formats import encoder_state, random_checkpoint
    from highlighter.core.save import save_model

    ck = random_checkpoint("vit_tiny/16")
    dino = save_model(tmp_path / "run_teacher.safetensors", "dino", ck.vit, ck.state)
    mae_pretrain = tmp_path / "mae_pretrain_vit_tiny.pth"  # the official MAE encoder-only layout
    torch.save({"model": encoder_state(ck.state)}, mae_pretrain)
    mae = window.mae
    mae.load_model(str(dino))
    qtbot.waitUntil(lambda: bool(mae.last_error), timeout=20000)
    assert "is a DINO checkpoint" in mae.last_error and "no MAE decoder" in mae.last_error
    assert "encoder-only" not in mae.last_error
    mae.last_error = None
    mae.load_model(str(mae_pretrain))
    qtbot.waitUntil(lambda: bool(mae.last_error), timeout=20000)
    assert "encoder-only" in mae.last_error and "DINO" not in mae.last_error


def test_a_failed_load_keeps_the_previous_model_and_its_banner(window, qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    shown = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: shown.append(a[2]))
    window.quiet = False
    mae = window.mae
    engine, label, banner = mae.engine, mae.model_label.text(), (mae.banner.isVisible(), mae.banner.text())
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"\x80\x02 truncated")
    mae.load_model(str(bad))
    qtbot.waitUntil(lambda: bool(shown), timeout=20000)
    assert "broken.pth" in shown[0]
    assert (mae.banner.isVisible(), mae.banner.text()) == banner  # no failure left in the banner
    assert mae.engine is engine and mae.model_label.text() == label
    assert "kept the previous model" in window.statusBar().currentMessage()


def test_a_click_on_the_masked_panel_toggles_the_patch_under_it(window, qtbot, cat_path):
    from PySide6.QtCore import QPoint, Qt

    from highlighter.images import load_rgb

    mae = window.mae
    mae.set_image(load_rgb(cat_path))
    qtbot.waitUntil(lambda: mae.result is not None, timeout=20000)
    view, g = mae.views[1], mae.engine.ck.vit.pos_grid
    r = view.shown_rect()
    cell = r.width() / g
    i = 2 * g + 3  # row 2, column 3
    first, before = int(mae.result.mask[i]), mae.result
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton,
                     pos=QPoint(int(r.x() + 3.5 * cell), int(r.y() + 2.5 * cell)))
    qtbot.waitUntil(lambda: mae.result is not before, timeout=20000)
    assert int(mae.result.mask[i]) == 1 - first
    assert (np.delete(mae.result.mask, i) == np.delete(before.mask, i)).all()
