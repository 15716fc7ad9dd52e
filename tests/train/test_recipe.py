"""What a long run and a recipe search need from the trainer: extending a run, --init, the objectness probe,
backbone variants (registers, depth, MLP ratio), and a first one-epoch try."""

import argparse
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from needs import shared_data

from highlighter.cli import build_parser
from highlighter.commands.train import build_config
from highlighter.core.build import build_attention_model
from highlighter.core.formats import load_checkpoint
from highlighter.core.schedules import cosine_schedule
from highlighter.core.transforms import dino_preprocess
from highlighter.images import load_rgb

from .test_runs import CAT, events, train


def _cat_attention(path, size=(64, 64)) -> np.ndarray:
    ck = load_checkpoint(path)
    x, _ = dino_preprocess(load_rgb(CAT), size, ck.vit.patch_size)
    with torch.no_grad():
        return build_attention_model(ck)(x)[0].numpy()


@pytest.mark.parametrize("kind", ["dino", "mae"])
def test_resume_with_more_epochs_extends_a_finished_run(real_photos, tmp_path, kind):
    run = tmp_path / "run"
    r = train(kind, real_photos, run, "--log-every", "1", "--epochs", "1", "--warmup-epochs", "0")
    assert r.returncode == 0, r.stderr[-2000:]
    assert [e["step"] for e in events(run, "step")] == list(range(6))
    again = train(kind, real_photos, run, "--resume", "--log-every", "1", "--epochs", "1")
    assert again.returncode == 0 and "nothing to resume" in again.stderr and "larger --epochs" in again.stderr
    longer = train(kind, real_photos, run, "--resume", "--log-every", "1", "--epochs", "2")
    assert longer.returncode == 0, longer.stderr[-2000:]
    assert "recomputed over 2 epochs" in longer.stderr
    steps = events(run, "step")
    assert [e["step"] for e in steps] == list(range(12))  # the second epoch was trained
    extended = events(run, "extended")
    assert len(extended) == 1 and extended[0]["epochs_before"] == 1 and extended[0]["epochs"] == 2
    assert torch.load(run / "checkpoint.pth", weights_only=True)["epoch"] == 2
    if kind == "dino":  # the learning rate of the new steps follows the 2-epoch schedule, not the 1-epoch one
        lr2 = cosine_schedule(5e-4 * 4 / 256, 1e-6, 2, 6, 0)
        np.testing.assert_allclose([e["lr"] for e in steps[6:]], lr2[6:], rtol=1e-6)
        lr1 = cosine_schedule(5e-4 * 4 / 256, 1e-6, 1, 6, 0)
        np.testing.assert_allclose([e["lr"] for e in steps[:6]], lr1, rtol=1e-6)
    shorter = train(kind, real_photos, run, "--resume", "--epochs", "1")
    assert shorter.returncode != 0 and "already trained 2 epochs" in shorter.stderr


def test_init_with_zero_lr_keeps_the_init_models_attention(real_photos, tmp_path):
    """--init from an official DINO backbone file; with --lr 0 --min-lr 0 the run's teacher gives that file's
    attention (to float rounding of the EMA, m x + (1 - m) x), and the student's weights are untouched."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from official_files import dino_backbone

    init = tmp_path / "dino_official.pth"
    dino_backbone(init, dim=192, depth=2, heads=3, patch=16, grid=2, seed=3)
    run = tmp_path / "run"
    r = train("dino", real_photos, run, "--init", init, "--lr", "0", "--min-lr", "0", "--epochs", "1",
              "--warmup-epochs", "0")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "--init: starting from dino_official.pth" in r.stderr
    ck = torch.load(run / "checkpoint.pth", weights_only=True)
    assert ck["highlighter"]["init_from"] == str(init) and ck["highlighter"]["vit"]["depth"] == 2
    official = torch.load(init, weights_only=True)
    for k, v in official.items():
        assert torch.equal(ck["student"][f"backbone.{k}"], v), k
    np.testing.assert_allclose(_cat_attention(run / "checkpoint.pth"), _cat_attention(init), atol=1e-6, rtol=0)
    # negative control: a real learning rate moves the attention
    moved = tmp_path / "moved"
    assert train("dino", real_photos, moved, "--init", init, "--lr", "0.05", "--epochs", "1",
                 "--warmup-epochs", "0").returncode == 0
    assert np.abs(_cat_attention(moved / "checkpoint.pth") - _cat_attention(init)).max() > 1e-4
    # the architecture comes from the file: an --arch that disagrees is refused
    bad = train("dino", real_photos, tmp_path / "bad", "--init", init, "--arch", "vit_small")
    assert bad.returncode != 0 and "--arch vit_small conflicts with --init" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_backbone_variants_train_load_and_export(real_photos, tmp_path, cli):
    run = tmp_path / "run"
    r = train("dino", real_photos, run, "--num-registers", "2", "--depth", "3", "--mlp-ratio", "2",
              "--num-heads", "6", "--epochs", "1", "--warmup-epochs", "0")
    assert r.returncode == 0, r.stderr[-2000:]
    ck = load_checkpoint(run / "checkpoint.pth")
    assert (ck.vit.depth, ck.vit.num_heads, ck.vit.mlp_hidden, ck.vit.num_register_tokens) == (3, 6, 384, 2)
    assert ck.vit.pos_interp == "dino"  # our registers use DINO's interpolation, not the DINOv2-reg rule
    regs = ck.state["register_tokens"][0]
    assert not torch.allclose(regs[0], regs[1])  # distinct registers (zeros would stay identical)
    code, _, err = cli("export", "--checkpoint", run / "checkpoint.pth", "--half", "--out", tmp_path / "m.safetensors")
    assert code == 0, err
    code, _, err = cli("attention", CAT, "--checkpoint", tmp_path / "m.safetensors", "--image-size", 64,
                       "--out", tmp_path / "a")
    assert code == 0, err
    att = np.load(tmp_path / "a" / "chelsea_cat.npz")["attention"]
    assert att.shape == (6, 4, 6)  # 6 heads on the patch grid, registers dropped
    code, _, err = cli("export", "--checkpoint", tmp_path / "m.safetensors", "--format", "onnx", "--image-size",
                       64, 64, "--out", tmp_path / "m.onnx")
    assert code == 0, err
    import onnxruntime as ort

    from highlighter.core.transforms import IMAGENET_MEAN, IMAGENET_STD

    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x, _ = dino_preprocess(load_rgb(CAT), (64, 64), 16)
    raw = (x.numpy() * np.array(IMAGENET_STD)[:, None, None] + np.array(IMAGENET_MEAN)[:, None, None]) * 255
    name = sess.get_inputs()[0].name
    outs = {o.name: v for o, v in zip(sess.get_outputs(), sess.run(None, {name: raw.astype(np.float32)}))}
    onnx_att = next(v for k, v in outs.items() if "attention" in k)
    ref = _cat_attention(tmp_path / "m.safetensors")
    np.testing.assert_allclose(onnx_att.reshape(ref.shape), ref, atol=2e-3)


def _config(*argv):
    args = build_parser().parse_args(["train", "dino", "--data", "x", "--out", "y", *argv])
    return build_config("dino", args)


def test_a_first_one_epoch_run_shortens_the_default_warmup(capsys):
    cfg = _config("--epochs", "1")
    assert cfg.warmup_epochs == pytest.approx(0.1)
    out = capsys.readouterr().out
    assert "the default --warmup-epochs 10.0 does not fit in 1 epoch(s); using 0.1" in out
    cfg = _config("--epochs", "3", "--preset", "small-data")  # the preset's 30 teacher-temperature epochs
    assert cfg.warmup_epochs == pytest.approx(0.3) and cfg.warmup_teacher_temp_epochs == 0
    assert "the small-data preset's --warmup-teacher-temp-epochs 30" in capsys.readouterr().out
    with pytest.raises(Exception, match="--warmup-epochs 5.0 is longer than --epochs 2"):
        _config("--epochs", "2", "--warmup-epochs", "5")  # typed by the user: still an error
    assert _config("--epochs", "20").warmup_epochs == 10  # fits: unchanged


def test_the_shortened_warmup_schedule_runs(real_photos, tmp_path):
    run = tmp_path / "run"
    r = train("dino", real_photos, run, "--log-every", "1", "--epochs", "1", "--warmup-epochs", "0.5")
    assert r.returncode == 0, r.stderr[-2000:]
    lrs = [e["lr"] for e in events(run, "step")]
    np.testing.assert_allclose(lrs, cosine_schedule(5e-4 * 4 / 256, 1e-6, 1, 6, 0.5), rtol=1e-6)
    assert lrs[0] == 0 and lrs[2] == pytest.approx(5e-4 * 4 / 256)  # 3 warmup steps, then the peak


# ----------------------------------------------------------------------------------------------- the probe
class _Planted(torch.nn.Module):
    """An AttentionViT stand-in whose attention is a given function of the ground truth on the patch grid."""

    def __init__(self, probe, fn, heads=2, keymask=lambda g: g):
        super().__init__()
        self.cfg = argparse.Namespace(num_register_tokens=0, patch_size=probe.patch_size)
        self.lookup = {}
        for photos in probe.sets.values():
            for ph in photos:
                for x, small in ph.inputs.values():
                    self.lookup[x.data_ptr()] = small
        self.fn, self.heads, self.keymask = fn, heads, keymask

    def forward(self, x, keys=None):
        small = self.lookup.get(x.data_ptr())
        gh, gw = x.shape[-2] // self.cfg.patch_size, x.shape[-1] // self.cfg.patch_size
        a = np.full((gh, gw), 1.0 / (gh * gw)) if small is None else self.fn(small)
        att = torch.from_numpy(np.stack([a] * self.heads)).float()[None]
        if keys is not None:  # keys that separate object from background perfectly
            k = np.zeros((gh * gw, 4))
            if small is not None:
                obj = self.keymask(small).reshape(-1)
                k[obj, 0] = 1
                k[~obj, 1] = 1
            else:
                k[:, 0] = 1
            keys.append(torch.from_numpy(k)[None].float())  # the patch keys, as AttentionViT gives them
        return att


@pytest.fixture(scope="module")
def probe_folder(tmp_path_factory):
    src = shared_data("eval", "horses")
    dst = tmp_path_factory.mktemp("probe") / "horses"
    (dst / "images").mkdir(parents=True)
    (dst / "masks").mkdir()
    for p in sorted((src / "images").iterdir())[:9]:
        shutil.copy(p, dst / "images" / p.name)
        shutil.copy(src / "masks" / f"{p.stem}.png", dst / "masks" / f"{p.stem}.png")
    return dst


def _ring_share(shape) -> float:
    h, w = shape
    return 1 - (h - 2) * (w - 2) / (h * w)


def test_probe_figures_against_planted_attention(probe_folder):
    from highlighter.evaluation import grid_to_image, iou
    from highlighter.probe import Probe

    probe = Probe([probe_folder], 8, sizes=(64,), split="selection")
    photos = probe.sets["horses"]
    assert [p.name for p in photos] == [p.stem for p in sorted((probe_folder / "images").iterdir())[::3]]
    report = Probe([probe_folder], 8, sizes=(64,), split="report")
    assert not {p.name for p in photos} & {p.name for p in report.sets["horses"]}  # disjoint halves
    assert len(report.sets["horses"]) == 6

    on_object = probe(_Planted(probe, lambda g: np.where(g, 1.0, 0.01)))["horses"]["64"]
    assert on_object["in_out"] == pytest.approx(100.0, rel=1e-4)
    off_object = probe(_Planted(probe, lambda g: np.where(g, 0.01, 1.0)))["horses"]["64"]
    assert off_object["in_out"] == pytest.approx(0.01, rel=1e-4)
    assert off_object["iou"]["mass"] < 0.2 < on_object["iou"]["mass"]

    # keys that split the object's largest 4-connected part from the rest: both TokenCut rules find exactly that
    # part (on the grid), whatever the attention says for the border rule
    def largest(g):
        n, labels = cv2.connectedComponents(g.astype(np.uint8), connectivity=4)
        sizes = [(labels == i).sum() for i in range(1, n)]
        return labels == 1 + int(np.argmax(sizes))

    want = np.mean([iou(grid_to_image(largest(p.inputs[64][1]), p.gt.shape), p.gt) for p in photos])
    cut = probe(_Planted(probe, lambda g: np.where(largest(g), 1.0, 0.01), keymask=largest))["horses"]["64"]
    assert cut["iou"]["tokencut"] == pytest.approx(want, abs=1e-9)
    assert cut["iou"]["tokencut-border"] == pytest.approx(want, abs=1e-9)
    flipped = probe(_Planted(probe, lambda g: np.where(largest(g), 0.01, 1.0), keymask=largest))["horses"]["64"]
    assert flipped["iou"]["tokencut-border"] == pytest.approx(want, abs=1e-9)  # ignores the attention
    assert flipped["iou"]["tokencut"] < want - 0.1  # follows it to the background

    def border(g):  # all attention on the outer ring
        a = np.full(g.shape, 1e-6)
        a[0], a[-1], a[:, 0], a[:, -1] = 1, 1, 1, 1
        return a

    res = probe(_Planted(probe, border))
    want_border = np.mean([1 / _ring_share(p.inputs[64][1].shape) for p in photos])
    assert res["horses"]["64"]["border"] == pytest.approx(want_border, rel=1e-3)
    assert res["flat"]["64"] == pytest.approx(1.0)  # the planted model is flat on the constant image


def test_probe_command_and_training_log(probe_folder, real_photos, tmp_path, cli):
    run = tmp_path / "run"
    r = train("dino", real_photos, run, "--probe-every-minutes", "0.0001", "--probe-data", probe_folder,
              "--probe-sizes", "32", "48", "--epochs", "1", "--warmup-epochs", "0")
    assert r.returncode == 0, r.stderr[-2000:]
    probes = events(run, "probe")
    assert len(probes) >= 2 and probes[0]["step"] == 0 and probes[-1]["step"] == 6
    assert str(probe_folder) in probes[0]["source"] and "every 3rd photo" in probes[0]["source"]
    for p in probes:
        assert set(p["horses"]) == {"32", "48"} and 0 <= p["horses"]["32"]["iou"]["mass"] <= 1
        assert np.isfinite(p["horses"]["48"]["in_out"]) and 0 < p["flat"]["32"] <= 1
        assert p["score"] == pytest.approx(p["horses"]["32"]["in_out"])  # one folder: its in/out
    # the teacher of the best probe is kept: the last probe that beat every earlier one
    kept = [p for p in probes if p["kept"]]
    assert kept[0] is probes[0] and all(b["score"] > a["score"] for a, b in zip(kept, kept[1:]))
    assert all(p["score"] <= kept[-1]["score"] for p in probes)
    best = load_checkpoint(run / "probe_best.safetensors")
    assert best.meta["trained"]["steps"] == kept[-1]["step"]
    assert best.meta["trained"]["probe_in_out"]["horses"] == pytest.approx(kept[-1]["score"])
    if kept[-1] is probes[-1]:  # the final teacher: the file holds its weights (fp16)
        final = load_checkpoint(run / "checkpoint.pth")
        for k, v in best.state.items():
            torch.testing.assert_close(v, final.state[k].half().float())
    # the command gives the same figures for the final checkpoint
    code, out, err = cli("probe", "--checkpoint", run / "checkpoint.pth", "--data", probe_folder,
                         "--sizes", "32", "48", "--json", tmp_path / "p.json")
    assert code == 0, err
    got = json.loads((tmp_path / "p.json").read_text())
    assert got["horses"]["48"]["in_out"] == pytest.approx(probes[-1]["horses"]["48"]["in_out"], rel=1e-5)
    assert got["horses"]["32"]["iou"] == pytest.approx(probes[-1]["horses"]["32"]["iou"], rel=1e-5)
    assert "horses" in out and "in/out" in out
    code, _, err = cli("probe", "--checkpoint", run / "checkpoint.pth", "--data", tmp_path / "nothing")
    assert code != 0 and "needs images/ and masks/" in err


def test_peak_component_keeps_the_blob_with_the_peak():
    from highlighter.probe import peak_component

    mask = np.zeros((6, 8), bool)
    mask[1:3, 1:3] = True  # blob A
    mask[3:6, 5:8] = True  # blob B, larger
    att = np.ones((6, 8))
    att[2, 2] = 5.0  # the peak is in A
    got = peak_component(mask, att)
    assert got.sum() == 4 and got[1:3, 1:3].all()
    att[4, 6] = 9.0  # now in B
    assert peak_component(mask, att).sum() == 9
    att[0, 0] = 99.0  # the peak outside the mask: the mask is kept whole
    assert np.array_equal(peak_component(mask, att), mask)
