"""Photos: a click picks an object (the connected patches similar to the clicked one) and the other photos show
its matches (each patch's nearest-neighbour similarity to the object's patches). A real click on blackswan's swan
in one frame; the matches in a later frame are checked against its ground truth."""

from pathlib import Path

import numpy as np
import pytest
from needs import qt, shared_data

qt()
from PySide6.QtCore import QPoint, Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from highlighter.features import region_match, similar_region  # noqa: E402

pytestmark = pytest.mark.gui
DEFAULT = Path(__file__).resolve().parents[2] / "models" / "dino_default.safetensors"


def grid_truth(seq: Path, name: str, grid) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(seq / "masks" / f"{Path(name).stem}.png").resize(grid[::-1], Image.NEAREST)) > 0


def test_a_clicked_object_is_matched_in_the_other_photo(open_window, qtbot):
    seq = shared_data("video", "blackswan")
    first, later = seq / "frames" / "00000.jpg", seq / "frames" / "00020.jpg"
    window = open_window(tab="photos", checkpoint=str(DEFAULT))
    tab = window.photos
    tab.add_paths([str(later)])  # analysed when shown: its features are cached for the matches
    qtbot.waitUntil(lambda: tab.gallery.count() == 1 and tab.current_result() is not None, timeout=60000)
    tab.add_paths([str(first)])
    qtbot.waitUntil(lambda: tab.gallery.count() == 2, timeout=20000)
    tab.gallery.setCurrentRow(1)
    qtbot.waitUntil(lambda: tab.current_result() is not None and tab.sim_panel.result is tab.current_result(),
                    timeout=60000)
    res, panel, calls = tab.current_result(), tab.sim_panel, tab.model_calls
    other = tab.cache[tab._key(str(later))]
    h, w = res.grid
    gt = grid_truth(seq, first.name, res.grid)
    i, j = 17, 22  # on the swan's body (the shipped model's tokens there are alike over 42 patches)
    assert (h, w) == (28, 50) and gt[i, j]
    # a real click on the swan, at the centre of patch (i, j)
    pix = panel.view.pixmap()
    x0, y0 = (panel.view.width() - pix.width()) / 2, (panel.view.height() - pix.height()) / 2
    sx, sy = pix.width() / w, pix.height() / h  # one patch, on screen (the grid covers the picture)
    QTest.mouseClick(panel.view, Qt.MouseButton.LeftButton, pos=QPoint(round(x0 + (j + 0.5) * sx),
                                                                      round(y0 + (i + 0.5) * sy)))
    assert panel.index == i * w + j
    t = panel.threshold.value()
    np.testing.assert_array_equal(panel.region, similar_region(res.tokens, panel.index, res.grid, t))
    assert panel.region[i, j] and (panel.region & gt).sum() >= 0.8 * panel.region.sum()  # on the swan
    match = panel.match_maps[later.name]
    np.testing.assert_allclose(match, region_match(res.tokens[panel.region.ravel()], other.tokens, other.grid),
                               atol=1e-6)
    # the matches are where the swan is in the later frame (measured: 0.85 against 0.61; of the best-matching
    # patches as many as the swan has, 47% are on it, which covers 10% of the frame)
    gt_later = grid_truth(seq, later.name, other.grid)
    assert match[gt_later].mean() > match[~gt_later].mean() + 0.15
    best = np.argsort(-match.ravel())[:gt_later.sum()]
    assert gt_later.ravel()[best].mean() > 3 * gt_later.mean()
    found = match >= t
    text = panel.matches_text.text()
    assert f"object {int(panel.region.sum())} patches (similarity >= {t:.2f})" in text
    assert f"{later.name}: " in text and f"object {int(found.sum())} patches" in text
    assert not panel.matches_view.pixmap().isNull()
    # another threshold: another object and other matches, from the same cache
    panel.threshold.setValue(0.3)
    np.testing.assert_array_equal(panel.region, similar_region(res.tokens, panel.index, res.grid, 0.3))
    assert panel.region.sum() > 1
    assert tab.model_calls == calls
