"""The Photos tab as a user meets it: a "computing…" state, maps sized to the space, readable reasons for
unreadable files, and "Save all…" that asks before writing and never starts in the photos' folder."""

import shutil
from pathlib import Path

import pytest
from needs import qt

qt()
pytestmark = pytest.mark.gui


@pytest.fixture
def window(open_window):
    return open_window(tab="photos")


def shown(view):
    pix = view.pixmap()
    return pix is not None and not pix.isNull()


def test_a_new_photo_says_computing_and_clears_the_previous_maps(window, qtbot, photos):
    tab = window.photos
    tab.add_paths([str(p) for p in photos[:2]])
    qtbot.waitUntil(lambda: tab.gallery.count() == 2 and tab.current_result() is not None, timeout=20000)
    qtbot.waitUntil(lambda: shown(tab.mask_view) and tab.busy.text() == "", timeout=5000)
    tab.gallery.setCurrentRow(1)  # the second photo: not computed yet
    # at once, before the model has answered: no maps of the first photo are left on screen
    assert tab.busy.text().startswith("computing…") and photos[1].name in tab.busy.text()
    assert not shown(tab.mask_view) and tab.mask_view.text() == "computing…"
    assert not shown(tab.fused_view) and tab.fused_view.text() == "computing…"
    assert tab.head_views == []
    qtbot.waitUntil(lambda: tab.busy.text() == "" and shown(tab.mask_view), timeout=20000)
    assert len(tab.head_views) == 3 and all(shown(v) for v in tab.head_views)
    tab.gallery.setCurrentRow(0)  # back to a cached photo: shown at once, no computing state
    assert tab.busy.text() == "" and shown(tab.mask_view)


def test_per_head_maps_fill_the_space_they_have(window, qtbot, cat_path):
    tab = window.photos
    tab.add_paths([str(cat_path)])
    qtbot.waitUntil(lambda: len(tab.head_views) == 3 and all(shown(v) for v in tab.head_views), timeout=20000)
    qtbot.wait(50)

    def filled(v):  # the picture touches two sides of its cell: no large empty areas
        pix = v.pixmap()
        return pix.width() >= v.width() - 2 or pix.height() >= v.height() - 2

    sizes = [v.pixmap().size() for v in tab.head_views]
    assert all(filled(v) for v in tab.head_views)
    assert min(s.width() for s in sizes) > 200  # was a fixed 150 x 110 whatever the window
    assert filled(tab.mask_view) and filled(tab.fused_view)
    window.resize(1600, 1000)
    qtbot.waitUntil(lambda: tab.head_views[0].pixmap().width() > sizes[0].width(), timeout=5000)
    assert all(filled(v) for v in tab.head_views)


def test_unreadable_files_show_the_whole_reason_and_the_path_in_a_tooltip(window, qtbot, tmp_path):
    folder = tmp_path / "a folder with a rather long name that would push the reason off the list"
    folder.mkdir()
    fake = folder / "fake.jpg"
    fake.write_bytes(b"this is no jpeg")
    tab = window.photos
    tab.add_paths([str(fake)])
    qtbot.waitUntil(lambda: tab.unreadable.count() == 1, timeout=20000)
    item = tab.unreadable.item(0)
    assert item.text() == "fake.jpg: not an image (unrecognised format)"
    assert item.toolTip() == f"{fake}: not an image (unrecognised format)"
    assert tab.unreadable.wordWrap()


def test_save_all_asks_first_and_starts_in_a_results_folder(window, qtbot, tmp_path, monkeypatch, photos):
    from PySide6.QtWidgets import QFileDialog, QMessageBox

    dataset = tmp_path / "dataset"
    dataset.mkdir()
    for p in photos[:2]:
        shutil.copy(p, dataset / p.name)
    tab = window.photos
    tab.add_paths([str(p) for p in sorted(dataset.iterdir())])
    qtbot.waitUntil(lambda: tab.gallery.count() == 2, timeout=20000)
    chosen, starts, questions, answer = [tmp_path / "out"], [], [], [QMessageBox.StandardButton.Cancel]
    (tmp_path / "out").mkdir()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory",
                        lambda parent, title, start="": starts.append(start) or str(chosen[0]))
    monkeypatch.setattr(QMessageBox, "question", lambda parent, title, text, *a: questions.append(text) or answer[0])

    tab.save_btn.click()
    assert starts == [str(tmp_path / "highlighter-results")]  # not the photos' folder
    assert (tmp_path / "highlighter-results").is_dir()
    # per photo: the .npz, 3 head maps, the fused map, the overlay, the PCA picture; and one boxes.json
    assert str(tmp_path / "out") in questions[0] and "15 files" in questions[0] and "2 photos" in questions[0]
    assert list((tmp_path / "out").iterdir()) == []  # cancelled: nothing written

    answer[0] = QMessageBox.StandardButton.Yes
    tab.save_btn.click()
    qtbot.waitUntil(lambda: window.statusBar().currentMessage().startswith("saved 2 result"), timeout=30000)
    assert len(list((tmp_path / "out").iterdir())) == 15 and "15 files" in window.statusBar().currentMessage()
    assert str(tmp_path / "out") in window.statusBar().currentMessage()
    tab.save_btn.click()  # next time the dialog opens where the results went
    assert starts[-1] == str(tmp_path / "out")

    chosen[0], answer[0] = dataset, QMessageBox.StandardButton.Cancel
    tab.save_btn.click()  # picking the photos' own folder is warned about, and not remembered
    assert "folder the photos come from" in questions[-1]
    assert len(list(dataset.iterdir())) == 2
    assert Path(starts[-1]) != dataset


def test_a_cleared_picture_grid_shows_nothing_of_its_old_pictures_at_once(qtbot):
    """Per-head maps of the previous photo must not stay under the new ones until the event loop deletes them
    (a script grabbing the tab without an event loop showed both)."""
    from PySide6.QtWidgets import QLabel

    from highlighter.gui.qt_util import FitGrid

    grid = FitGrid()
    qtbot.addWidget(grid)
    grid.resize(600, 300)
    grid.show()
    for i in range(3):
        grid.add(f"head {i}")
    qtbot.waitUntil(lambda: len([w for w in grid.findChildren(QLabel) if w.isVisible()]) == 6)
    grid.clear()  # no event loop runs between this and the check
    assert [w for w in grid.findChildren(QLabel) if w.isVisible()] == []
    grid.add("head 0")
    qtbot.waitUntil(lambda: [w.text() for w in grid.findChildren(QLabel) if w.isVisible() and w.text()] == ["head 0"])
