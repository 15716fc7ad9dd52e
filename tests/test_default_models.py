"""The models shipped in models/: what they are, that every command uses them without --checkpoint, and that
the MAE's reconstructions beat the trivial fill on the bundled photos (real photos, not the eval set)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from highlighter.core.formats import load_checkpoint

MODELS = Path(__file__).resolve().parents[1] / "models"
DINO, MAE = MODELS / "dino_default.safetensors", MODELS / "mae_default.safetensors"


def header(path: Path) -> dict:
    with safe_open(path, "pt") as f:
        return json.loads(f.metadata()["highlighter"])


def test_shipped_files_are_small_fp16_and_trained_on_train_data_only():
    assert DINO.is_file() and MAE.is_file(), "the default models must ship in models/"
    assert DINO.stat().st_size + MAE.stat().st_size < 50e6
    for path, kind in ((DINO, "dino"), (MAE, "mae")):
        h = header(path)
        assert h["kind"] == kind and h["trained"]["task"] == kind
        # the MAE ran 14 epochs; the DINO default is the teacher at its run's best objectness probe (5.3k images)
        assert h["trained"]["images_seen"] > (100_000 if kind == "mae" else 5_000)
        assert h["trained"].get("epochs_done", 0) >= 1 if kind == "mae" else h["trained"]["steps"] > 0
        # never eval/ or video/, and not the Tiny ImageNet val split that the k-NN evaluation uses
        for folder in h["trained"]["data"]:
            parts = Path(folder).parts
            assert "train" in parts and "eval" not in parts and "video" not in parts and "val" not in parts
        with safe_open(path, "pt") as f:
            assert {f.get_tensor(k).dtype for k in f.keys() if f.get_tensor(k).is_floating_point()} == {
                torch.float16}
    dino = load_checkpoint(DINO)
    assert dino.decoder is None and not any(k.startswith("head") for k in dino.state)  # the backbone only
    assert load_checkpoint(MAE).decoder.norm_pix_loss is False  # true colours in the MAE tab


def test_attention_without_checkpoint_uses_the_default(cli, tmp_path, cat_path):
    code, out, err = cli("attention", cat_path, "--image-size", 112, "--out", tmp_path)
    assert code == 0, err
    assert "dino_default.safetensors" in out + err
    ck = load_checkpoint(DINO)
    att = np.load(tmp_path / "chelsea_cat.npz")["attention"]
    assert att.shape[0] == ck.vit.num_heads and att.shape[1] == 112 // ck.vit.patch_size
    assert np.allclose(att.reshape(att.shape[0], -1).sum(1), 1.0, atol=0.05)  # softmax minus the class token


def test_mae_without_checkpoint_beats_the_mean_fill_on_the_demo_photos(cli, tmp_path):
    code, out, err = cli("eval", "--mae", "--images", Path(__file__).resolve().parents[1] / "assets",
                         "--json", tmp_path / "m.json")
    assert code == 0, err
    r = json.loads((tmp_path / "m.json").read_text())
    assert r["images"] == 5 and "mae_default.safetensors" in r["model"]["checkpoint"]
    assert r["reduction_vs_mean_fill"] >= 0.20, r["reduction_vs_mean_fill"]
    assert all(row["mse"] < row["mean_fill_mse"] for row in r["per_image"])


def test_video_without_checkpoint_writes_masks_at_each_photo_size(cli, tmp_path, photos):
    folder = tmp_path / "stills"
    folder.mkdir()
    sizes = {}
    for k, p in enumerate(photos[:3]):
        img = Image.open(p).convert("RGB")
        img = img.resize((img.width // (k + 1), img.height // (k + 1)))
        img.save(folder / f"{k}.jpg")
        sizes[str(k)] = (img.height, img.width)
    code, out, err = cli("video", folder, "--backend", "torch-fp32", "--out", tmp_path / "out")
    assert code == 0, err
    assert "dino_default.safetensors" in out
    # the same masks as with the shipped file named explicitly: the default is that file
    code, _, err = cli("video", folder, "--backend", "torch-fp32", "--checkpoint", DINO, "--out", tmp_path / "named")
    assert code == 0, err
    for stem, shape in sizes.items():
        mask = np.asarray(Image.open(tmp_path / "out" / "masks" / f"{stem}.png"))
        assert mask.shape == shape and set(np.unique(mask)) <= {0, 255} and 0 < (mask > 0).mean() < 1
        np.testing.assert_array_equal(mask, np.asarray(Image.open(tmp_path / "named" / "masks" / f"{stem}.png")))


@pytest.mark.parametrize("name", ["dino_default.safetensors", "mae_default.safetensors"])
def test_model_card_documents_each_file(name):
    card = (MODELS / "README.md").read_text()
    assert name in card and "Known limits" in card
