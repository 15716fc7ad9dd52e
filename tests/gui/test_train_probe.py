"""The Train tab plots the objectness probe that a real training child process logs."""

import shutil

import pytest
from needs import qt, shared_data

qt()
pytestmark = pytest.mark.gui


def test_probe_curves_follow_the_runs_probe_events(window, qtbot, tmp_path):
    src, horses = shared_data("train", "tinyimagenet", "train"), shared_data("eval", "horses")
    data = tmp_path / "photos"
    data.mkdir()
    for f in sorted(src.rglob("*.JPEG"))[:8]:
        shutil.copy(f, data / f.name)
    probe = tmp_path / "probe" / "horses"
    (probe / "images").mkdir(parents=True)
    (probe / "masks").mkdir()
    for p in sorted((horses / "images").iterdir())[:6]:
        shutil.copy(p, probe / "images" / p.name)
        shutil.copy(horses / "masks" / f"{p.stem}.png", probe / "masks" / f"{p.stem}.png")
    tab = window.train
    tab.folders.addItem(str(data))
    tab.out.setText(str(tmp_path / "run"))
    tab.epochs.setValue(2)
    tab.batch.setValue(4)
    assert "--probe-every-minutes" not in tab.command(False)
    tab.probe_box.setChecked(True)
    tab.probe_dir.setText(str(probe))
    cmd = tab.command(False)
    assert cmd[cmd.index("--probe-every-minutes") + 1] == "10" and cmd[cmd.index("--probe-data") + 1] == str(probe)
    tab.extra_args = ["--arch", "vit_tiny", "--patch-size", "16", "--global-crop-size", "32", "--local-crop-size",
                      "16", "--local-crops-number", "2", "--out-dim", "64", "--num-workers", "0", "--warmup-epochs",
                      "1", "--preview-every", "0", "--probe-every-minutes", "0.0001", "--probe-sizes", "32"]
    tab.start()
    qtbot.waitUntil(lambda: tab.proc is None, timeout=180000)
    assert tab.progress.value() == tab.progress.maximum() == 4
    assert list(tab.probe_curves) == ["horses (32 px)"]
    xs, ys = tab.probe_curves["horses (32 px)"].getData()
    assert xs[0] == 0 and xs[-1] == 4 and len(xs) >= 3  # a probe at the start, after steps, at the end
    assert all(0 < y < 10 for y in ys)
    assert str(probe) in tab.probe_plot.toolTip()  # which photos the figures come from
    assert tab.eta.text() == ""  # no ETA once the run has ended
