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


@pytest.mark.parametrize("command,rule,bad,range_text", [
    (["attention", "IMG", "--out", "OUT"], "percentile", 150, "from 0 to 100"),
    (["attention", "IMG", "--out", "OUT"], "percentile", -5, "from 0 to 100"),
    (["attention", "IMG", "--out", "OUT"], "mass", 1.5, "above 0 and at most 1"),
    (["attention", "IMG", "--out", "OUT"], "mass", -1, "above 0 and at most 1"),
    (["attention", "IMG", "--out", "OUT"], "mass", 0, "above 0 and at most 1"),
    (["attention", "IMG", "--out", "OUT"], "absolute", 2, "from 0 to 1"),
    (["eval", "--images", "OUT", "--masks", "OUT"], "mass", -1, "above 0 and at most 1"),
    (["eval", "--images", "OUT", "--masks", "OUT"], "percentile", 101, "from 0 to 100"),
    (["video", "IMG", "--out", "OUT"], None, 1.5, "above 0 and at most 1"),
    (["attention", "IMG", "--out", "OUT"], "mass", float("nan"), "above 0 and at most 1")])
def test_threshold_outside_its_rules_range_is_refused_when_parsed(cli, tmp_path, cat_path, command, rule, bad,
                                                                  range_text):
    """percentile 150 was a traceback and an empty folder; mass 1.5 a 100% mask, -1 an empty one; eval -1 IoU 0."""
    rule_args = ["--mask-rule", rule] if rule else []
    code, out, err = cli(*argv_for(command, cat_path, tmp_path), *rule_args, "--threshold", bad)
    line = one_line(code, out, err)
    assert "--threshold" in line and f"{rule or 'mass'} rule" in line and range_text in line
    assert out == "" and not (tmp_path / "out").exists()


def test_each_rules_range_edges():
    from highlighter.postprocess import check_threshold

    for rule, good in [("mass", [1e-6, 0.6, 1.0]), ("percentile", [0, 80, 100]), ("absolute", [0, 0.01, 1])]:
        for t in good:
            check_threshold(rule, t)
    for rule, bad in [("mass", [0, 1.0001]), ("percentile", [-0.1, 100.1]), ("absolute", [-0.01, 1.01])]:
        for t in bad:
            with pytest.raises(ValueError, match=f"the {rule} rule takes"):
                check_threshold(rule, t)


def test_tokencut_takes_no_threshold(cli, tmp_path):
    line = one_line(*cli("eval", "--images", tmp_path, "--masks", tmp_path, "--mask-rule", "tokencut",
                         "--threshold", "0.5"))
    assert "--threshold does not apply to --mask-rule tokencut" in line


BEFORE_LOAD = [
    (["attention", "MISSING.jpg", "--out", "OUT"], "MISSING.jpg: no such file or folder"),
    (["attention", "EMPTY", "--out", "OUT"], "no images in this folder"),
    (["attention", "IMG", "--out", "AFILE"], "a file is there, not a folder"),
    (["mae", "MISSING.jpg", "--out", "OUT"], "MISSING.jpg: no such file or folder"),
    (["mae", "IMG", "--out", "OUT", "--mask-ratio", "1.5"], "--mask-ratio"),
    (["mae", "IMG", "--out", "OUT", "--mask", "MISSING.npy"], "MISSING.npy: no such file"),
    (["video", "MISSING.mp4", "--out", "OUT"], "MISSING.mp4: no such file, folder or camera"),
    (["video", "EMPTY", "--out", "OUT"], "EMPTY: no images found"),
    (["video", "IMG", "--out", "OUT", "--overlay", "pca", "--backend", "ort-int8"], "needs the patch tokens"),
    (["video", "IMG", "--out", "OUT", "--backend", "fast"], "--backend fast: choose from auto"),
    (["eval", "--images", "MISSING", "--masks", "EMPTY"], "--images"),
    (["eval", "--images", "EMPTY", "--masks", "EMPTY"], "no images in this folder"),
    (["eval", "--images", "IMGDIR"], "eval needs --images DIR and --masks DIR"),
    (["eval", "--mae"], "eval --mae needs --images"),
    (["eval", "--knn", "--train", "IMGDIR"], "--knn needs"),
    (["probe", "--data", "EMPTY"], "needs images/ and masks/"),
    (["bench", "live", "--source", "MISSING", "--checkpoint", "default"], "no frames in"),
    (["attention", "IMG", "--out", "OUT", "--image-size", "0"], "--image-size: sizes are pixels, at least 1, got 0"),
    (["video", "IMG", "--out", "OUT", "--image-size", "-8"], "--image-size: sizes are pixels, at least 1"),
    (["export", "--checkpoint", "default", "--out", "OUT/m.onnx", "--image-size", "224", "0"], "--image-size: sizes"),
    (["pack", "EMPTY", "--out", "OUT.zip"], "EMPTY: no images found (looked for"),
]


@pytest.mark.parametrize("command,message", BEFORE_LOAD, ids=lambda c: "-".join(c) if isinstance(c, list) else "")
def test_arguments_are_checked_before_the_model_loads_and_nothing_is_left(cli, tmp_path, cat_path, command, message,
                                                                          monkeypatch):
    """Missing paths, empty folders and wrong flags were found after 2 to 5 s of loading, and --out was made."""
    import shutil

    def no_load(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr("highlighter.core.formats.read_checkpoint_file", no_load)
    (tmp_path / "EMPTY").mkdir()
    (tmp_path / "IMGDIR").mkdir()
    shutil.copy(cat_path, tmp_path / "IMGDIR")
    (tmp_path / "AFILE").write_text("x")
    names = {"IMG": str(cat_path), "OUT": str(tmp_path / "out")}
    argv = [names.get(a) or (str(tmp_path / a) if a.isupper() else a) for a in command]
    line = one_line(*cli(*argv))
    assert message in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["AFILE", "EMPTY", "IMGDIR"]  # no out folder, nothing new


@pytest.mark.parametrize("command", ["attention", "mae"])
def test_no_output_folder_when_no_photo_could_be_processed(cli, tmp_path, command):
    (tmp_path / "notes.jpg").write_text("not a photo")
    model = "random:vit_tiny/16" if command == "attention" else "default"
    code, out, err = cli(command, tmp_path / "notes.jpg", "--checkpoint", model, "--out", tmp_path / "out")
    assert code == 2 and "no image could be processed (1 unreadable file(s))" in err
    assert "notes.jpg: not an image" in err
    assert not (tmp_path / "out").exists()


def test_export_and_gui_take_the_same_checkpoint_names_as_every_command(cli, tmp_path, monkeypatch):
    """export --checkpoint default said "checkpoint not found: default"; gui tried to open a file called default."""
    from safetensors.torch import load_file

    from highlighter.paths import default_checkpoint

    code, out, err = cli("export", "--checkpoint", "default", "--out", tmp_path / "dino.safetensors")
    assert code == 0, err
    want = load_file(default_checkpoint("attention"))
    got = load_file(tmp_path / "dino.safetensors")
    assert set(got) == set(want) and all((got[k].float() == want[k].float()).all() for k in want)

    code, out, err = cli("export", "--checkpoint", "default", "--format", "mae", "--out", tmp_path / "mae.pth")
    assert code == 0, err
    from highlighter.core.safe_read import read_checkpoint_file

    assert "decoder_embed.weight" in read_checkpoint_file(tmp_path / "mae.pth")[0]["model"]

    code, out, err = cli("export", "--checkpoint", "random:vit_tiny/16", "--out", tmp_path / "r.pth")
    assert code == 0 and torch.load(tmp_path / "r.pth", weights_only=True)["pos_embed"].shape == (1, 197, 192)

    from needs import qt

    qt()
    import highlighter.gui.app as app

    seen = []
    monkeypatch.setattr(app, "main", lambda checkpoint, *a, **k: seen.append(checkpoint) or 0)
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    for spec in ["default", "random:vit_tiny/16", str(tmp_path / "r.pth")]:
        assert cli("gui", "--checkpoint", spec, "--no-start")[0] == 0
    assert seen == [str(default_checkpoint("attention")), "random:vit_tiny/16", str(tmp_path / "r.pth")]


@pytest.mark.parametrize("heads", ["-1", "1,-2", "x"])
def test_heads_are_indices_from_0_when_parsed(cli, tmp_path, cat_path, capsys, heads):
    """--heads -1 was a ValueError traceback after the model loaded."""
    with pytest.raises(SystemExit) as e:
        cli("video", cat_path, f"--heads={heads}", "--out", tmp_path / "out")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"--heads takes comma-separated head indices from 0, got '{heads}'" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_video_refuses_a_head_the_model_lacks(cli, tmp_path, cat_path):
    """--heads 7 on a 3-head model ran with every head fused, exit 0, and said nothing."""
    code, out, err = cli("video", cat_path, "--checkpoint", "random:vit_tiny/16", "--heads", "0,7", "--out",
                         tmp_path / "out")
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == "error: --heads: head index 7 out of range: the model has heads 0..2"
    assert not (tmp_path / "out").exists()


def test_pack_names_itself_for_an_empty_folder(cli, tmp_path):
    """pack said "--data DIR: no images found", a flag it does not have."""
    (tmp_path / "empty").mkdir()
    line = one_line(*cli("pack", tmp_path / "empty", "--out", tmp_path / "p.zip"))
    assert line.startswith(f"error: pack {tmp_path / 'empty'}: no images found") and "--data" not in line
    assert not (tmp_path / "p.zip").exists()
