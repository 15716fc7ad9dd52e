"""The "Get official weights…" dialog under pytest-qt (offscreen), against a loopback server on 127.0.0.1:
what the picker, the list, the progress bar and the status line show."""

from pathlib import Path

import pytest
from needs import qt

from highlighter.catalogue import CATALOGUE

from weights_server import WeightsServer, block_internet, files_in, official_path

qt()  # a skip on a developer's machine without the gui extra, a failure in CI
from PySide6.QtCore import Qt  # noqa: E402

pytestmark = pytest.mark.gui


@pytest.fixture
def env(qtbot, tmp_path, monkeypatch, official_tree):
    asked = block_internet(monkeypatch)
    monkeypatch.setenv("HIGHLIGHTER_SETTINGS", str(tmp_path / "settings.ini"))
    monkeypatch.setenv("HIGHLIGHTER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    from highlighter.gui.app import MainWindow

    with WeightsServer(official_tree["root"]) as server:
        w = MainWindow(checkpoint="random:vit_tiny/16", quiet=True)
        qtbot.addWidget(w)
        w.show()
        yield w, server, asked, tmp_path / "cache"
        w.close()


def picker(w) -> dict[str, str]:
    return {w.model_combo.itemText(i): w.model_combo.itemData(i) for i in range(w.model_combo.count())}


def open_dialog(w, qtbot):
    from highlighter.gui.app import GET

    w.model_combo.activated.emit(w.model_combo.findData(GET))  # the user picks "Get official weights…"
    dialog = w.weights_dialog
    qtbot.waitUntil(dialog.isVisible, timeout=5000)
    return dialog


def row_text(dialog, name: str) -> str:
    for i in range(dialog.list.count()):
        if dialog.list.item(i).data(Qt.ItemDataRole.UserRole) == name:
            return dialog.list.item(i).text()
    raise KeyError(name)


def test_download_with_progress_then_the_picker_lists_and_loads_it(env, qtbot, official_tree):
    w, server, asked, cache = env
    assert asked == [] and server.log == []  # start-up contacted nobody
    assert "Get official weights…" in picker(w) and not any(t.startswith("dino_vits16") for t in picker(w))
    model_before = w.model_spec
    dialog = open_dialog(w, qtbot)
    assert w.model_spec == model_before  # picking the dialog entry keeps the model
    assert dialog.list.count() == len(CATALOGUE) and "not downloaded" in row_text(dialog, "dino_vits16")
    dialog.select("dino_vits16")
    assert "dl.fbaipublicfiles.com/dino/dino_deitsmall16_pretrain" in dialog.detail.text()
    assert "none published" in dialog.detail.text()
    dialog.mirror.setText(server.url)

    # first try: the connection drops at 40%; the dialog says so and keeps the bytes for a resume
    data = official_tree["good"].read_bytes()
    server.drop_after[official_path(CATALOGUE["dino_vits16"].url)] = len(data) * 2 // 5
    qtbot.mouseClick(dialog.get_button, Qt.MouseButton.LeftButton)
    assert not dialog.get_button.isEnabled()  # one download at a time
    qtbot.waitUntil(lambda: dialog.get_button.isEnabled(), timeout=60000)
    assert dialog.status.text().startswith("error: dino_vits16: the download broke off")
    assert "resumes" in dialog.status.text() and dialog.progress.value() == 0
    assert not (cache / "weights" / "dino_deitsmall16_pretrain.pth").exists()

    # second try: resumed, with the bar moving through intermediate values to the end
    values = []
    dialog.progress.valueChanged.connect(values.append)
    qtbot.mouseClick(dialog.get_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.status.text().startswith("verified"), timeout=60000)
    assert server.log[-1]["range"] == f"bytes={len(data) * 2 // 5}-"
    assert "resumed after" in dialog.status.text() and "vit_small/16" in dialog.status.text()
    assert dialog.progress.value() == dialog.progress.maximum()
    assert any(0 < v < dialog.progress.maximum() for v in values) and values == sorted(values)
    assert "downloaded" in row_text(dialog, "dino_vits16") and "not downloaded" not in row_text(dialog, "dino_vits16")
    path = str(cache / "weights" / "dino_deitsmall16_pretrain.pth")
    assert files_in(cache) == ["weights/dino_deitsmall16_pretrain.pth"]

    # the picker lists the name, and the window switches to it
    assert picker(w).get("dino_vits16 (official DINO vit_small/16)") == path
    qtbot.waitUntil(lambda: w.model_spec == path, timeout=30000)
    assert w.ck.vit.embed_dim == 384 and "dino_deitsmall16_pretrain.pth" in w.model_info.text()
    assert w.model_combo.currentText() == "dino_vits16 (official DINO vit_small/16)"
    assert all(a[0] == "127.0.0.1" for a in asked)


def test_a_404_is_shown_and_nothing_changes(env, qtbot):
    w, server, asked, cache = env
    dialog = open_dialog(w, qtbot)
    dialog.select("dino_vitb8")  # not on the server
    dialog.mirror.setText(server.url)
    items_before = picker(w)
    qtbot.mouseClick(dialog.get_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.status.text().startswith("error"), timeout=30000)
    assert "404" in dialog.status.text() and "nothing was downloaded" in dialog.status.text()
    assert dialog.progress.value() == 0 and dialog.get_button.isEnabled()
    assert "not downloaded" in row_text(dialog, "dino_vitb8")
    assert picker(w) == items_before and not Path(cache).exists()


def test_a_bad_mirror_is_refused_before_any_request(env, qtbot):
    w, server, asked, _ = env
    dialog = open_dialog(w, qtbot)
    dialog.mirror.setText("127.0.0.1:8000")  # no scheme
    assert dialog.start() is False
    assert dialog.status.text().startswith("error: --mirror needs") and server.log == [] and asked == []


def test_a_name_in_the_settings_or_on_the_command_line_loads_its_file(qtbot, tmp_path, monkeypatch, official_tree):
    """MainWindow(checkpoint='dino_vits16') resolves the name; before a download it falls back to the shipped
    default (issue 12: not to a random model) and says so."""
    import shutil

    from highlighter.gui.app import MainWindow
    from highlighter.paths import default_checkpoint

    monkeypatch.setenv("HIGHLIGHTER_SETTINGS", str(tmp_path / "settings.ini"))
    monkeypatch.setenv("HIGHLIGHTER_CACHE", str(tmp_path / "cache"))
    w = MainWindow(checkpoint="dino_vits16", quiet=True)
    qtbot.addWidget(w)
    assert w.model_spec == str(default_checkpoint("attention")) and "weights get dino_vits16" in w.last_error
    assert "dino_default.safetensors instead" in w.last_error and w.model_combo.currentData() == w.model_spec
    w.close()
    target = tmp_path / "cache" / "weights" / "dino_deitsmall16_pretrain.pth"
    target.parent.mkdir(parents=True)
    shutil.copy(official_tree["good"], target)
    w = MainWindow(checkpoint="dino_vits16", quiet=True)
    qtbot.addWidget(w)
    assert w.model_spec == str(target) and w.ck.vit.embed_dim == 384
    w.close()


def test_a_downloaded_mae_visualize_file_also_goes_to_the_mae_tab(env, qtbot):
    """What the dialog's success does for an MAE file with a decoder (a small one here, at the real name)."""
    import official_files as off

    w, _, _, cache = env
    path = cache / "weights" / "mae_visualize_vit_base.pth"
    path.parent.mkdir(parents=True)
    off.mae_official(path, with_args=False, depth=2, dec_dim=128, dec_depth=1, dec_heads=4)
    w._official_downloaded(str(path))
    assert picker(w).get("mae_visualize_vit_base (official MAE vit_base/16)") == str(path)
    qtbot.waitUntil(lambda: w.mae.engine is not None and w.mae.engine.ck.path == str(path), timeout=30000)
    assert str(path.name) in w.mae.model_label.text()
    qtbot.waitUntil(lambda: w.model_spec == str(path), timeout=30000)  # and Live/Photos use its encoder
