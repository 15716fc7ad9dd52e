"""The weights dialog with the gated DINOv3 entries: shown with their licence and access page, never downloaded."""

from pathlib import Path

import pytest
from needs import qt

from highlighter.catalogue import DINOV3_ACCESS, DINOV3_LICENCE

from weights_server import block_internet

qt()  # a skip on a developer's machine without the gui extra, a failure in CI

pytestmark = pytest.mark.gui


def test_a_gated_entry_says_how_to_get_it_and_asks_nothing(qtbot, tmp_path, monkeypatch):
    asked = block_internet(monkeypatch, loopback=False)
    monkeypatch.setenv("HIGHLIGHTER_CACHE", str(tmp_path / "cache"))
    from highlighter.gui.weights_dialog import WeightsDialog

    dialog = WeightsDialog()
    qtbot.addWidget(dialog)
    dialog.select("dinov3_vits16")
    assert DINOV3_LICENCE in dialog.detail.text() and DINOV3_ACCESS in dialog.detail.text()
    assert "gated" in dialog.list.currentItem().text()
    assert dialog.start() is False and not dialog.busy()
    assert dialog.status.text().startswith("error: dinov3_vits16") and "--file PATH" in dialog.status.text()
    assert asked == [] and not Path(tmp_path / "cache").exists()


def test_a_downloaded_file_is_checked_and_kept_off_the_gui_thread(qtbot, tmp_path, monkeypatch):
    import dataclasses
    import hashlib

    from dinov3_files import WEIGHTS as FIXTURE
    from dinov3_files import tiny_official_file

    from highlighter.catalogue import CATALOGUE

    asked = block_internet(monkeypatch, loopback=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("HIGHLIGHTER_CACHE", str(cache))
    path = tiny_official_file(tmp_path / "dinov3_vits16_pretrain_lvd1689m-08c60483.pth")
    entry = dataclasses.replace(CATALOGUE["dinov3_vits16"], arch="vit_tiny/16", depth=1,
                                checksum=("sha256", hashlib.sha256(path.read_bytes()).hexdigest()[:8]))
    monkeypatch.setitem(CATALOGUE, "dinov3_vits16", entry)
    from highlighter.gui.weights_dialog import WeightsDialog

    dialog = WeightsDialog()
    qtbot.addWidget(dialog)
    dialog.select("dinov3_vits16")
    assert dialog.use_file(str(FIXTURE))  # another architecture: refused, nothing kept
    qtbot.waitUntil(lambda: dialog.status.text().startswith("error"), timeout=20000)
    assert "is not the released" in dialog.status.text() and not (cache / "weights").exists()
    assert dialog.file_button.isEnabled()
    with qtbot.waitSignal(dialog.downloaded, timeout=20000) as got:
        assert dialog.use_file(str(path))
    kept = cache / "weights" / entry.filename
    assert got.args == [str(kept)] and kept.read_bytes() == path.read_bytes()
    assert dialog.status.text().startswith("verified: dinov3_vits16")
    assert "downloaded" in dialog.list.currentItem().text()
    assert asked == []
