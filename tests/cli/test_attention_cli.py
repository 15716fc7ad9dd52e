"""`highlighter attention` against visualize_attention.py on the bundled photos, for every format."""

import numpy as np
import pytest
import torch
from PIL import Image

from highlighter.preprocess import fit_size

import official_files as off
from reference import RefViT, visualize_attention


def check_against_official(cli, tmp_path, ckpt, ref, photo, size_args, patch, extra=(), threshold=0.6):
    out = tmp_path / "out"
    code, stdout, err = cli("attention", photo, "--checkpoint", ckpt, "--image-size", *size_args, "--out", out,
                            "--device", "cpu", "--threshold", threshold, *extra)
    assert code == 0, err
    got = np.load(out / f"{photo.stem}.npz")
    img = Image.open(photo).convert("RGB")
    # one S: the shorter side at S, both sides rounded to the patch, the whole photo resized (the script, given
    # one int, crops the remainder instead): the script is run at the size the road chose
    size = tuple(size_args) if len(size_args) == 2 else fit_size((img.height, img.width), size_args[0], patch)
    want_attn, want_mask = visualize_attention(ref, img, size, patch, threshold)
    assert got["attention"].dtype == np.float32 and got["mask"].dtype == np.uint8
    assert got["attention"].shape == want_attn.shape
    np.testing.assert_allclose(got["attention"], want_attn, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got["mask"], want_mask.astype(np.uint8))
    return got, stdout, err


def test_official_dino_backbone_480(cli, tmp_path, cat_path):
    ref = off.dino_backbone(tmp_path / "dino_deittiny16_pretrain.pth")
    got, stdout, _ = check_against_official(cli, tmp_path, tmp_path / "dino_deittiny16_pretrain.pth", ref, cat_path,
                                            [480, 480], 16)
    assert got["attention"].shape == (3, 30, 30)
    assert "vit_tiny/16" in stdout
    # the PNGs: one heatmap per head and the fused heatmap at the processed size; the mask overlay on the photo
    out = tmp_path / "out"
    for name in ["chelsea_cat_attn_head0", "chelsea_cat_attn_head2", "chelsea_cat_attn_fused"]:
        assert Image.open(out / f"{name}.png").size == (480, 480)
    assert Image.open(out / "chelsea_cat_mask_overlay.png").size == Image.open(cat_path).size
    np.testing.assert_allclose(got["fused_attention"], got["attention"].mean(0), atol=1e-7)


def test_shorter_side_and_patch8_non_square(cli, tmp_path, photos):
    ref = off.dino_backbone(tmp_path / "b.pth", patch=8, grid=28, depth=4, seed=3)
    photo = [p for p in photos if "rocket" in p.name][0]  # 512 x 342 landscape photo
    got, _, _ = check_against_official(cli, tmp_path, tmp_path / "b.pth", ref, photo, [150], 8,
                                       extra=["--num-heads", "3"], threshold=0.4)
    h, w = got["attention"].shape[1:]
    assert (h, w) == (19, 28)  # shorter side 150 -> 152 (19 patches), the long side 224.6 -> 224: rounded


def test_official_dino_full_checkpoint_teacher_and_student(cli, tmp_path, cat_path):
    teacher, student = off.dino_full(tmp_path / "checkpoint.pth")
    check_against_official(cli, tmp_path, tmp_path / "checkpoint.pth", teacher, cat_path, [224, 288], 16)
    check_against_official(cli, tmp_path, tmp_path / "checkpoint.pth", student, cat_path, [224, 288], 16,
                           extra=["--checkpoint-key", "student"])


def test_timm_safetensors(cli, tmp_path, photos):
    ref = RefViT(seed=5).eval()
    off.timm_safetensors(tmp_path / "model.safetensors", ref)
    _, _, err = check_against_official(cli, tmp_path, tmp_path / "model.safetensors", ref, photos[0], [320, 240], 16)
    assert "unexpected" not in err  # the classifier head is known to be unused


@pytest.mark.parametrize("registers,chunks", [(0, False), (4, False), (0, True)])
def test_official_dinov2(cli, tmp_path, cat_path, registers, chunks):
    ref = off.dinov2_official(tmp_path / "dinov2.pth", registers=registers, chunks=chunks, grid=16, depth=8, seed=7)
    got, stdout, _ = check_against_official(cli, tmp_path, tmp_path / "dinov2.pth", ref, cat_path, [252, 336], 14)
    assert got["attention"].shape == (3, 18, 24)
    if registers:
        assert "4 registers" in stdout


def test_timm_dinov2_registers_layout(cli, tmp_path, cat_path):
    ref = RefViT(layerscale=True, patch=14, grid=16, depth=6, n_reg=4, interpolate_offset=0.0,
                 interpolate_antialias=True, seed=8).eval()
    off.dinov2_reg_timm(tmp_path / "reg.safetensors", ref)
    check_against_official(cli, tmp_path, tmp_path / "reg.safetensors", ref, cat_path, [196, 280], 14)


def test_dinov2_giant_style_swiglu(cli, tmp_path, cat_path):
    ref = RefViT(dim=128, heads=2, layerscale=True, patch=14, grid=8, depth=3, swiglu=True, hidden=96, seed=9).eval()
    torch.save(ref.state_dict(), tmp_path / "g.pth")
    check_against_official(cli, tmp_path, tmp_path / "g.pth", ref, cat_path, [140, 140], 14)


def test_mae_encoder_gives_attention(cli, tmp_path, cat_path):
    ref = off.mae_official(tmp_path / "mae.pth", encoder_only=True)
    # the MAE encoder uses the same blocks; compare through a RefViT holding the same weights
    vit = RefViT().eval()
    vit.load_state_dict({k: v for k, v in ref.state_dict().items()}, strict=True)
    check_against_official(cli, tmp_path, tmp_path / "mae.pth", vit, cat_path, [224, 224], 16)


def test_threshold_and_rules_and_heads(cli, tmp_path, cat_path):
    ref = off.dino_backbone(tmp_path / "b.pth", depth=3)
    check_against_official(cli, tmp_path, tmp_path / "b.pth", ref, cat_path, [224, 224], 16,
                           threshold=0.3)
    code, _, err = cli("attention", cat_path, "--checkpoint", tmp_path / "b.pth", "--image-size", 224,
                       "--mask-rule", "percentile", "--threshold", "90", "--heads", "0,2", "--out", tmp_path / "p")
    assert code == 0, err
    got = np.load(tmp_path / "p" / "chelsea_cat.npz")
    fused = got["attention"][[0, 2]].mean(0)
    np.testing.assert_allclose(got["fused_attention"], fused, atol=1e-7)
    np.testing.assert_array_equal(got["fused_mask"], (fused >= np.percentile(fused, 90)).astype(np.uint8))
    np.testing.assert_array_equal(got["mask"][1], got["attention"][1] >= np.percentile(got["attention"][1], 90))


def test_folder_input_skips_unreadable_images_with_a_warning(cli, tmp_path, photos):
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in photos[:2]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.jpg").write_bytes(photos[2].read_bytes()[:3000])  # truncated JPEG
    (folder / "notes.png").write_text("not an image")
    (folder / "readme.txt").write_text("ignored: not an image extension")
    off.dino_backbone(tmp_path / "b.pth", depth=2)
    code, stdout, err = cli("attention", folder, "--checkpoint", tmp_path / "b.pth", "--image-size", 160,
                            "--out", tmp_path / "o")
    assert code == 0
    assert "broken.jpg" in err and "notes.png" in err and "readme" not in err
    assert sorted(p.name for p in (tmp_path / "o").glob("*.npz")) == sorted(f"{p.stem}.npz" for p in photos[:2])
    assert "skipped 2 unreadable" in stdout


def test_same_stem_from_two_folders_is_not_overwritten(cli, tmp_path, cat_path):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "cat.jpg").write_bytes(cat_path.read_bytes())
    off.dino_backbone(tmp_path / "b.pth", depth=2)
    code, _, err = cli("attention", tmp_path / "a", tmp_path / "b", "--checkpoint", tmp_path / "b.pth",
                       "--image-size", 96, "--out", tmp_path / "o")
    assert code == 0 and "cat-2" in err
    assert (tmp_path / "o" / "cat.npz").exists() and (tmp_path / "o" / "cat-2.npz").exists()


def test_bundled_photos_all_processed(cli, tmp_path, photos):
    code, stdout, err = cli("attention", photos[0].parent, "--checkpoint", "random:vit_tiny/16", "--image-size", 128,
                            "--out", tmp_path / "o")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "o").glob("*.npz")) == sorted(f"{p.stem}.npz" for p in photos)
    assert "untrained" in stdout
    grids = set()
    for p in photos:  # each photo's own grid: the shorter side at 128, the longer one scaled and rounded
        w, h = Image.open(p).size
        grid = (round(128 * h / min(w, h) / 16), round(128 * w / min(w, h) / 16))
        got = np.load(tmp_path / "o" / f"{p.stem}.npz")
        assert got["attention"].shape == got["mask"].shape == (3, *grid), p.name  # ViT-Ti: 3 heads
        assert got["fused_attention"].shape == got["fused_mask"].shape == grid, p.name
        grids.add(grid)
    assert len(grids) >= 2  # square and 3:2: each photo has its own grid


def test_bad_device_is_a_clear_error(cli, tmp_path, cat_path):
    code, _, err = cli("attention", cat_path, "--checkpoint", "random:vit_tiny/16", "--device", "tpu",
                       "--out", tmp_path)
    assert code == 2 and "unknown device 'tpu'" in err


def test_no_default_model_yet_says_what_to_do(cli, tmp_path, cat_path, monkeypatch):
    monkeypatch.setenv("HIGHLIGHTER_MODELS", str(tmp_path))
    code, _, err = cli("attention", cat_path, "--out", tmp_path / "o")
    assert code == 2 and "no default attention model" in err and "--checkpoint" in err
