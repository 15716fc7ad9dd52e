"""Feature PCA and boxes on the photo road (`highlighter attention --pca`, boxes.json), against independent
computations: numpy's SVD of the reference model's final-norm patch tokens, and OpenCV's connected components on
the mask upsampled to the photo's own pixels."""

import json
import shutil

import cv2
import numpy as np
import torch
from PIL import Image

import official_files as off
from reference import official_input, x_norm_patchtokens

SIZE = [252, 336]  # (H, W) on the 14-pixel grid: 18 x 24 patches


def svd_rgb(tokens: np.ndarray) -> np.ndarray:
    """The DINOv2 demo's PCA picture, written out: centre, SVD, first three components, min-max per channel."""
    centred = tokens - tokens.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    proj = centred @ vt[:3].T
    return (proj - proj.min(0)) / (proj.max(0) - proj.min(0))


def same_up_to_sign(got: np.ndarray, want: np.ndarray, atol: float) -> None:
    """Principal directions have no sign: each channel is either the same or flipped (1 - x)."""
    got, want = got.reshape(-1, 3), want.reshape(-1, 3)
    for c in range(3):
        assert np.allclose(got[:, c], want[:, c], atol=atol) or np.allclose(got[:, c], 1 - want[:, c], atol=atol), c


def reference_tokens(ref, photo) -> np.ndarray:
    with torch.no_grad():
        x = official_input(Image.open(photo).convert("RGB"), SIZE, 14)
        return x_norm_patchtokens(ref, x)[0].double().numpy()


def test_pca_is_numpy_svd_of_the_official_patch_tokens_registers_dropped(cli, tmp_path, cat_path):
    ref = off.dinov2_official(tmp_path / "dinov2.pth", registers=4, grid=16, depth=4, seed=7)
    code, out, err = cli("attention", cat_path, "--checkpoint", tmp_path / "dinov2.pth", "--image-size", *SIZE,
                         "--pca", "--device", "cpu", "--out", tmp_path / "o")
    assert code == 0, err
    got = np.load(tmp_path / "o" / "chelsea_cat.npz")
    pca = got["pca"]
    assert pca.dtype == np.float32 and pca.shape == (18, 24, 3)
    assert pca.min() >= 0 and pca.max() <= 1
    same_up_to_sign(pca, svd_rgb(reference_tokens(ref, cat_path)), atol=2e-3)
    # the PNG is the npz's colours, each patch a 14 x 14 block
    png = np.asarray(Image.open(tmp_path / "o" / "chelsea_cat_pca.png"))
    assert png.shape == (252, 336, 3)
    want = (pca * 255 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(png[::14, ::14], want)
    np.testing.assert_array_equal(png[13::14, 13::14], want)
    assert set(got.files) == {"attention", "mask", "fused_attention", "fused_mask", "pca"}


def test_no_pca_without_the_flag(cli, tmp_path, cat_path):
    code, _, err = cli("attention", cat_path, "--checkpoint", "random:vit_tiny/16", "--device", "cpu",
                       "--out", tmp_path / "o")
    assert code == 0, err
    assert "pca" not in np.load(tmp_path / "o" / "chelsea_cat.npz").files
    assert not (tmp_path / "o" / "chelsea_cat_pca.png").exists()


def test_joint_pca_is_one_svd_over_every_photo(cli, tmp_path, photos):
    ref = off.dinov2_official(tmp_path / "dinov2.pth", grid=16, depth=4, seed=3)
    two = photos[:2]
    # the same photo twice, under another name: with one basis it must get the very same colours
    twin = tmp_path / "twin"
    twin.mkdir()
    shutil.copy(two[0], twin / "copy.jpg")
    code, out, err = cli("attention", *two, twin / "copy.jpg", "--checkpoint", tmp_path / "dinov2.pth",
                         "--image-size", *SIZE, "--pca-joint", "--device", "cpu", "--out", tmp_path / "o")
    assert code == 0, err
    assert "joint PCA: one basis over 3 photo(s)" in out
    tokens = [reference_tokens(ref, p) for p in (*two, two[0])]
    want = svd_rgb(np.concatenate(tokens)).reshape(3, 18 * 24, 3)  # min-max over all the photos' patches
    got = [np.load(tmp_path / "o" / f"{s}.npz")["pca"] for s in (two[0].stem, two[1].stem, "copy")]
    for g, w in zip(got, want):
        same_up_to_sign(g, w, atol=2e-3)
    np.testing.assert_allclose(got[0], got[2], atol=1e-6)
    # each channel spans [0, 1] over all the photos together, not in each photo alone
    allp = np.stack(got).reshape(-1, 3)
    assert np.allclose(allp.min(0), 0, atol=1e-6) and np.allclose(allp.max(0), 1, atol=1e-6)


def independent_box(mask_grid: np.ndarray, grid_px: tuple[int, int], resized: tuple[int, int],
                    original: tuple[int, int]):
    """The largest 8-connected component of the mask drawn on the original photo: each patch to its pixels on the
    resized photo (the grid covers it from the top-left), then that canvas resized to the photo's size."""
    rh, rw = resized
    canvas = np.zeros((rh, rw), np.uint8)
    up = np.kron(mask_grid.astype(np.uint8), np.ones((grid_px[0], grid_px[0]), np.uint8))
    canvas[:up.shape[0], :up.shape[1]] = up
    H, W = original
    full = cv2.resize(canvas, (W, H), interpolation=cv2.INTER_NEAREST)
    n, _, stats, _ = cv2.connectedComponentsWithStats(full, connectivity=8)
    if n <= 1:
        return None
    x, y, w, h = stats[1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])), :4]
    return [int(x), int(y), int(x + w), int(y + h)]


def test_boxes_json_on_a_real_photo_with_the_default_model(cli, tmp_path, cat_path, photos):
    """The shipped DINO ViT-Ti/8 on the bundled cat photo (451 x 300) and the rocket at another size."""
    rocket = [p for p in photos if "rocket" in p.name][0]
    code, out, err = cli("attention", cat_path, "--device", "cpu", "--out", tmp_path / "o")
    assert code == 0, err
    code, out, err = cli("attention", rocket, "--device", "cpu", "--image-size", 150, "--out", tmp_path / "r")
    assert code == 0, err
    for folder, photo in ((tmp_path / "o", cat_path), (tmp_path / "r", rocket)):
        boxes = json.loads((folder / "boxes.json").read_text())
        assert list(boxes) == [photo.stem]
        box = boxes[photo.stem]
        W, H = Image.open(photo).size
        mask = np.load(folder / f"{photo.stem}.npz")["fused_mask"]
        assert 0 < mask.mean() < 1  # a real mask, not all or nothing
        h, w = mask.shape
        want = independent_box(mask, (8, 8), (h * 8, w * 8), (H, W))  # the grid covers the whole photo
        assert box is not None and len(box) == 4
        assert np.abs(np.array(box) - want).max() <= 1, (box, want)  # rounding at the patch edges
        assert 0 <= box[0] < box[2] <= W and 0 <= box[1] < box[3] <= H
        assert f"box {box}" in out or folder.name == "o"


def test_empty_mask_box_is_null(tmp_path):
    from highlighter.results import write_attention
    from highlighter.video.pipeline import FrameResult

    attention = np.ones((2, 3, 4), np.float32)
    res = FrameResult(0, "flat", np.zeros((96, 128, 3), np.uint8), attention, attention.mean(0),
                      np.zeros((3, 4), bool), np.zeros((96, 128, 3), np.uint8), patch_size=16)
    stats = write_attention(tmp_path, "flat", res, "absolute", 5.0)  # nothing reaches the cut
    assert stats["box"] is None
    from highlighter.results import write_boxes

    write_boxes(tmp_path, {"flat": None, "x": [0, 0, 8, 8]})
    assert json.loads((tmp_path / "boxes.json").read_text()) == {"flat": None, "x": [0, 0, 8, 8]}
