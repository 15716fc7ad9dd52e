"""The bad-input sweep of the README's commands: each mistake is one line naming the flag, found before any model
loads, and leaves nothing behind."""

import pytest
import torch


def argv_for(command, cat_path, tmp_path):
    return [str(cat_path) if a == "IMG" else a.replace("OUT", str(tmp_path / "out")) for a in command]


def one_line(code, out, err):
    assert code == 2, err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in out + err
    return err.strip()


DEVICE_COMMANDS = [
    ["attention", "IMG", "--out", "OUT"], ["mae", "IMG", "--out", "OUT"], ["video", "IMG", "--out", "OUT"],
    ["eval", "--images", "OUT", "--masks", "OUT"], ["eval", "--mae", "--images", "OUT"],
    ["probe", "--data", "OUT"], ["train", "dino", "--data", "IMG", "--out", "OUT"]]


@pytest.mark.parametrize("command", DEVICE_COMMANDS, ids=lambda c: "-".join(a for a in c[:2] if a.isalpha()))
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_device_cuda_without_a_gpu_is_one_line_in_every_command(cli, tmp_path, cat_path, command, device,
                                                                 monkeypatch):
    """eval and probe gave a ValueError traceback; video with the automatic backend ran on the CPU, exit 0."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, out, err = cli(*argv_for(command, cat_path, tmp_path), "--device", device)
    line = one_line(code, out, err)
    assert f"--device {device}" in line and "no CUDA device" in line
    assert out == ""  # refused before the model loaded (which prints "model: ...")
    assert not (tmp_path / "out").exists()
