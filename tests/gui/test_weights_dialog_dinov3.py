"""The weights dialog with the gated DINOv3 entries: shown with their licence and access page, never downloaded."""

from pathlib import Path

import pytest
from needs import qt

from highlighter.weights import DINOV3_ACCESS, DINOV3_LICENCE

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
