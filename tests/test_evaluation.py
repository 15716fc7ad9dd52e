"""Evaluation: IoU, the ellipse baseline, sequences, k-NN voting, and the eval command."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from highlighter.evaluation import (
    centred_ellipse,
    hidden_pixels,
    iou,
    knn_classify,
    masked_mse,
    mean_fill,
    model_size,
    sequence_of,
    summarise,
)

from reference import mass_rule


def test_iou_and_ellipse():
    a = np.zeros((10, 10), bool)
    a[:5] = True
    b = np.zeros((10, 10), bool)
    b[:, :5] = True
    assert iou(a, b) == pytest.approx(25 / 75) and iou(a, a) == 1.0 and iou(~a & a, ~a & a) == 1.0
    for f in (0.1, 0.3, 0.6):
        e = centred_ellipse((480, 854), f)
        assert e.mean() == pytest.approx(f, abs=0.01)
        assert e[240, 427] and not e[0, 0]


def test_sequences_and_summary():
    assert sequence_of("bmx-trees_00035") == "bmx-trees" and sequence_of("horse001") is None
    rows = [{"name": "a_00001", "iou": 0.2}, {"name": "a_00002", "iou": 0.4}, {"name": "b_00001", "iou": 0.9}]
    s = summarise(rows, "iou")
    assert s["mean"] == pytest.approx(0.5) and s["per_sequence"] == pytest.approx({"a": 0.3, "b": 0.9})


def test_knn_votes_with_temperature_weights():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 16, generator=g) * 5
    train = torch.cat([centres[c] + 0.1 * torch.randn(30, 16, generator=g) for c in range(4)])
    labels = torch.arange(4).repeat_interleave(30)
    test = torch.cat([centres[c] + 0.1 * torch.randn(5, 16, generator=g) for c in range(4)])
    assert torch.equal(knn_classify(train, labels, test, k=20), torch.arange(4).repeat_interleave(5))
    # one very close neighbour outweighs several far ones: exp(sim / 0.07)
    tr = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.6, 0.8], [0.6, 0.8]])
    assert knn_classify(tr, torch.tensor([0, 1, 1, 1]), torch.tensor([[1.0, 0.05]]), k=4).item() == 0


def test_model_size_keeps_aspect_without_crop():
    assert model_size((480, 854), 224, 16) == (224, 400) and model_size((300, 200), 224, 8) == (336, 224)


def test_eval_command_on_a_small_set(tmp_path, cli, photos):
    imgs, masks = tmp_path / "images", tmp_path / "masks"
    imgs.mkdir()
    masks.mkdir()
    for k, p in enumerate(photos[:3]):
        img = Image.open(p).convert("RGB")
        img.save(imgs / f"seq{k % 2}_{k:05d}.jpg")
        m = np.zeros((img.height, img.width), np.uint8)
        m[img.height // 4: 3 * img.height // 4, img.width // 4: 3 * img.width // 4] = 255
        Image.fromarray(m).save(masks / f"seq{k % 2}_{k:05d}.png")
    Image.open(photos[3]).save(imgs / "nomask.jpg")
    code, out, err = cli("eval", "--checkpoint", "random:vit_tiny/16", "--images", imgs, "--masks", masks,
                         "--image-size", 96, "--json", tmp_path / "r.json")
    assert code == 0, err
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["images"] == 3 and "nomask.jpg" in err
    assert set(r["iou"]["per_sequence"]) == {"seq0", "seq1"}
    assert r["mean_foreground_fraction"] == pytest.approx(0.25, abs=0.01)
    # the centred ellipse of the mean fraction overlaps a centred box well; all-foreground gives the fraction
    assert r["baseline_ellipse"]["mean"] > 0.7
    assert r["baseline_all_foreground"]["mean"] == pytest.approx(0.25, abs=0.01)
    assert [row["name"] for row in r["per_image"]] == ["seq0_00000", "seq0_00002", "seq1_00001"]
    # each image's IoU recomputed here: the model's attention at the shorter side 96 (the aspect kept on the
    # 16 px grid), the official mass rule on the mean of the heads, nearest upsampling, |A & B| / |A | B|
    import torch

    from highlighter.core.build import build_attention_model
    from highlighter.core.formats import load_checkpoint
    from highlighter.preprocess import official

    model = build_attention_model(load_checkpoint("random:vit_tiny/16"))  # the model alone, official input
    for row, size in zip(r["per_image"], [(96, 96), (96, 144), (96, 144)]):  # 512x512, 512x341, 451x300
        img = Image.open(imgs / f"{row['name']}.jpg").convert("RGB")
        with torch.no_grad():
            attn = model(torch.from_numpy(official(img, size, 16)[0]))[0].numpy()
        grid = mass_rule(attn.mean(axis=0), 0.6).astype(bool)
        (h, w), (H, W) = grid.shape, (img.height, img.width)
        pred = grid[np.arange(H) * h // H][:, np.arange(W) * w // W]
        gt = np.asarray(Image.open(masks / f"{row['name']}.png")) == 255
        want = (pred & gt).sum() / (pred | gt).sum()
        assert 0 < want < 1 and row["iou"] == pytest.approx(want, rel=1e-9), row["name"]
        assert row["predicted_fraction"] == pytest.approx(pred.mean(), rel=1e-9), row["name"]
    assert r["iou"]["mean"] == pytest.approx(np.mean([row["iou"] for row in r["per_image"]]), rel=1e-9)
    assert r["iou"]["per_sequence"]["seq0"] == pytest.approx(
        (r["per_image"][0]["iou"] + r["per_image"][1]["iou"]) / 2, rel=1e-9)


def test_knn_command(tmp_path, cli, photos):
    """Each validation image is a copy of a training image: its own copy (similarity 1, weight exp(1 / 0.07))
    outvotes everything else whatever the features, so the labels, classes and voting are what is tested."""
    train, val = tmp_path / "train", tmp_path / "val"
    labels = []
    for c, p in enumerate(photos[1:3]):
        img = Image.open(p).convert("RGB").resize((64, 64))
        (train / f"class{c}").mkdir(parents=True)
        for k in range(4):
            (img.transpose(Image.FLIP_LEFT_RIGHT) if k % 2 else img).rotate(3 * k).save(
                train / f"class{c}" / f"{k}.jpg")
        val.mkdir(exist_ok=True)
        img.rotate(3).save(val / f"v{c}.jpg")
        (train / f"class{c}" / "1.jpg").write_bytes((val / f"v{c}.jpg").read_bytes())
        labels.append(f"v{c}.jpg\tclass{c}")
    (tmp_path / "labels.tsv").write_text("\n".join(labels) + "\n")
    code, out, err = cli("eval", "--knn", "--checkpoint", "random:vit_tiny/16", "--train", train, "--val", val,
                         "--labels", tmp_path / "labels.tsv", "--image-size", 64, "--k", 3,
                         "--json", tmp_path / "k.json")
    assert code == 0, err
    r = json.loads((tmp_path / "k.json").read_text())
    assert r["classes"] == 2 and r["train_images"] == 8 and r["val_images"] == 2
    assert r["knn_top1"] == 1.0


def test_mae_baseline_and_masked_mse_against_loops():
    rng = np.random.default_rng(0)
    p, grid = 4, (3, 5)
    img = rng.random((12, 20, 3))
    mask = np.zeros(15, np.uint8)
    mask[[0, 3, 7, 8, 14]] = 1  # row-major: (0,0) (0,3) (1,2) (1,3) (2,4)
    hidden = hidden_pixels(mask, grid, p)
    assert hidden.sum() == 5 * p * p and hidden[0:4, 12:16].all() and not hidden[0:4, 4:8].any()
    visible = [img[r * p:(r + 1) * p, c * p:(c + 1) * p].reshape(-1, 3)
               for r in range(3) for c in range(5) if not mask[r * 5 + c]]
    fill = np.concatenate(visible).mean(axis=0)
    filled = mean_fill(img, hidden)
    assert np.allclose(filled[4:8, 8:12], fill) and np.array_equal(filled[~hidden], img[~hidden])
    errs = [((fill - img[r * p:(r + 1) * p, c * p:(c + 1) * p]) ** 2).mean()
            for r in range(3) for c in range(5) if mask[r * 5 + c]]
    assert masked_mse(filled, img, hidden) == pytest.approx(np.mean(errs))
    assert masked_mse(img, img, hidden) == 0.0


def test_mae_eval_command(tmp_path, cli, photos):
    from highlighter.core.formats import random_mae_checkpoint
    from highlighter.core.inference import MAEEngine
    from highlighter.core.mae import IMAGENET_MEAN, IMAGENET_STD
    from highlighter.core.save import save_model
    from highlighter.images import load_rgb

    ck = random_mae_checkpoint()
    path = save_model(tmp_path / "mae.safetensors", "mae", ck.vit, ck.state, decoder=ck.decoder)
    imgs = tmp_path / "images"
    imgs.mkdir()
    for k, p in enumerate(photos[:2]):
        Image.open(p).convert("RGB").save(imgs / f"p{k}.jpg")
    code, out, err = cli("eval", "--mae", "--checkpoint", path, "--images", imgs, "--seeds", 2,
                         "--device", "cpu", "--json", tmp_path / "m.json")
    assert code == 0, err
    r = json.loads((tmp_path / "m.json").read_text())
    assert r["images"] == 2 and r["masks_per_image"] == 2 and r["mask_ratio"] == 0.75
    # recompute the first image's figures independently: same seeds, pixels in [0, 1], hidden patches only
    engine = MAEEngine.from_checkpoint(str(path), device="cpu")
    mse, fill = [], []
    for s in range(2):
        res = engine.run(load_rgb(imgs / "p0.jpg"), 0.75, seed=s)
        assert res.mask.sum() == 147  # 75% of 196
        px = [np.clip(v * IMAGENET_STD + IMAGENET_MEAN, 0, 1) for v in (res.views.original, res.views.reconstruction)]
        m = res.mask.reshape(14, 14).astype(bool)
        keep = np.kron(~m, np.ones((16, 16), bool))
        orig, rec = px
        mse.append(((rec - orig)[~keep] ** 2).mean())
        fill.append(((orig[keep].mean(axis=0) - orig[~keep]) ** 2).mean())
    row = r["per_image"][0]
    assert row["mse"] == pytest.approx(np.mean(mse), rel=1e-6)
    assert row["mean_fill_mse"] == pytest.approx(np.mean(fill), rel=1e-6)
    assert r["reduction_vs_mean_fill"] == pytest.approx(1 - r["mse"]["mean"] / r["baseline_mean_fill"]["mean"])
    assert "lower" in err or "lower" in out


def test_mae_eval_refuses_an_encoder_only_file(tmp_path, cli, photos):
    from highlighter.core.formats import random_mae_checkpoint
    from highlighter.core.save import save_model

    ck = random_mae_checkpoint()
    enc = {k: v for k, v in ck.state.items() if not k.startswith(("decoder", "mask_token"))}
    path = save_model(tmp_path / "enc.safetensors", "mae", ck.vit, enc)
    code, out, err = cli("eval", "--mae", "--checkpoint", path, "--images", photos[0].parent)
    assert code != 0 and "decoder" in err


def test_j_and_f_equal_the_davis_evaluation():
    """``iou`` and ``boundary_f`` against davis2017-evaluation's db_eval_iou and f_measure (tests/reference.py), on
    blobs, thin shapes, empty masks and a mask touching the borders."""
    import cv2

    from highlighter.evaluation import boundary_f

    from reference import davis_f, davis_j

    rng = np.random.default_rng(0)
    cases = []
    for _ in range(6):
        noise = cv2.GaussianBlur(rng.random((90, 160)).astype(np.float32), (0, 0), 6)
        a, b = noise > np.quantile(noise, 0.6), np.roll(noise, (3, -5), (0, 1)) > np.quantile(noise, 0.55)
        cases.append((a, b))
    empty = np.zeros((90, 160), bool)
    line = empty.copy()
    line[40, 10:150] = True
    border = empty.copy()
    border[:, :80] = True
    cases += [(empty, empty), (empty, border), (border, empty), (line, border), (border, border)]
    for pred, gt in cases:
        assert iou(pred, gt) == pytest.approx(davis_j(gt, pred), abs=1e-12)
        assert boundary_f(pred, gt) == pytest.approx(davis_f(pred, gt), abs=1e-12)
    assert boundary_f(border, border) == 1.0 and boundary_f(empty, border) == 0.0 and boundary_f(empty, empty) == 1.0
