"""`highlighter mae` against models_mae.py and the demo notebook."""

import numpy as np
import pytest
import torch
from PIL import Image

import official_files as off
from reference import noise_for_mask, notebook_input


def reference_run(ref, photo, mask):
    x = notebook_input(Image.open(photo).convert("RGB"))
    with torch.no_grad():
        loss, pred, m = ref(x, float(mask.mean()), noise_for_mask(mask))
    np.testing.assert_array_equal(m[0].numpy(), mask)
    return x[0], pred[0].numpy(), float(loss)


def notebook_views(x, pred, mask, p=16):
    """The notebook's composition, with its own unpatchify."""
    h = int(pred.shape[0] ** 0.5)

    def unpatchify(t):
        t = t.reshape(1, h, h, p, p, 3)
        return torch.einsum("nhwpqc->nchpwq", t).reshape(1, 3, h * p, h * p)

    y = torch.einsum("nchw->nhwc", unpatchify(torch.from_numpy(pred)))[0]
    m = torch.from_numpy(mask).float()[None, :, None].repeat(1, 1, p * p * 3)
    m = torch.einsum("nchw->nhwc", unpatchify(m))[0]
    xi = torch.einsum("chw->hwc", x)
    return (xi * (1 - m)).numpy(), (xi * (1 - m) + y * m).numpy()


def test_official_mae_with_seed_matches_models_mae(cli, tmp_path, cat_path):
    ref = off.mae_official(tmp_path / "mae_visualize.pth")
    code, stdout, err = cli("mae", cat_path, "--checkpoint", tmp_path / "mae_visualize.pth", "--seed", 3,
                            "--out", tmp_path / "o", "--device", "cpu")
    assert code == 0, err
    got = np.load(tmp_path / "o" / "chelsea_cat.npz")
    assert got["mask"].dtype == np.uint8 and got["mask"].shape == (196,)
    assert got["mask"].sum() == 196 - int(196 * 0.25)  # the official int(L * (1 - r)) visible patches
    # the same seed gives the same mask
    want_noise = torch.rand(1, 196, generator=torch.Generator().manual_seed(3))
    assert np.array_equal(got["mask"], (torch.argsort(torch.argsort(want_noise[0])) >= 49).numpy().astype(np.uint8))
    x, pred, loss = reference_run(ref, cat_path, got["mask"])
    assert got["pred"].dtype == np.float32 and got["pred"].shape == (196, 768)
    np.testing.assert_allclose(got["pred"], pred, rtol=0, atol=1e-5)
    _, paste = notebook_views(x, pred, got["mask"])
    np.testing.assert_allclose(got["paste"], paste, rtol=0, atol=1e-5)
    assert f"{loss:.4f}" in stdout
    picture = Image.open(tmp_path / "o" / "chelsea_cat.png")
    assert picture.width >= 4 * 224 and picture.height > 224  # four panels plus captions


def test_explicit_mask_file(cli, tmp_path, cat_path):
    ref = off.mae_official(tmp_path / "m.pth", dec_dim=128, dec_depth=2, dec_heads=4, depth=4)
    mask = np.zeros(196, np.uint8)
    mask[:98] = 1  # hide the top half
    np.save(tmp_path / "mask.npy", mask)
    code, _, err = cli("mae", cat_path, "--checkpoint", tmp_path / "m.pth", "--mask", tmp_path / "mask.npy",
                       "--decoder-num-heads", 4, "--out", tmp_path / "o")
    assert code == 0, err
    got = np.load(tmp_path / "o" / "chelsea_cat.npz")
    np.testing.assert_array_equal(got["mask"], mask)
    _, pred, _ = reference_run(ref, cat_path, mask)
    np.testing.assert_allclose(got["pred"], pred, rtol=0, atol=1e-5)
    # the wrong decoder head count is a different function: the test would notice
    code, _, _ = cli("mae", cat_path, "--checkpoint", tmp_path / "m.pth", "--mask", tmp_path / "mask.npy",
                     "--out", tmp_path / "o2")
    assert code == 0 and np.abs(np.load(tmp_path / "o2" / "chelsea_cat.npz")["pred"] - pred).max() > 1e-4


@pytest.mark.parametrize("bad,message", [
    (np.zeros(195), "need 196"), (np.full(196, 2), "need 196"), (np.ones(196), "every patch is hidden")])
def test_bad_mask_files(cli, tmp_path, cat_path, bad, message):
    off.mae_official(tmp_path / "m.pth", dec_dim=64, dec_depth=1, dec_heads=1, depth=1)
    np.save(tmp_path / "mask.npy", bad)
    code, _, err = cli("mae", cat_path, "--checkpoint", tmp_path / "m.pth", "--mask", tmp_path / "mask.npy",
                       "--out", tmp_path / "o")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_encoder_only_checkpoint_says_so(cli, tmp_path, cat_path):
    off.mae_official(tmp_path / "mae_pretrain_vit_tiny.pth", encoder_only=True, with_args=False)
    code, _, err = cli("mae", cat_path, "--checkpoint", tmp_path / "mae_pretrain_vit_tiny.pth", "--out", tmp_path)
    assert code == 2
    assert "no MAE decoder" in err and "encoder-only" in err
    assert len(err.strip().splitlines()) == 1


def test_norm_pix_checkpoint_is_labelled_and_honest(cli, tmp_path, cat_path):
    """pred is the reference norm-pix MAE's; hidden patches are pasted back with statistics taken from
    visible pixels only. The mask hides a checkerboard of interior patches, so each hidden patch's 4 nearest
    visible patches are exactly its 4 direct neighbours (any other visible patch is farther)."""
    ref = off.mae_official(tmp_path / "np.pth", norm_pix_loss=True, dec_dim=128, dec_depth=2, dec_heads=4, depth=2)
    r, c = np.divmod(np.arange(196), 14)
    mask = (((r + c) % 2 == 1) & (r > 0) & (r < 13) & (c > 0) & (c < 13)).astype(np.uint8)  # 72 hidden
    np.save(tmp_path / "mask.npy", mask)
    code, stdout, err = cli("mae", cat_path, "--checkpoint", tmp_path / "np.pth", "--decoder-num-heads", 4,
                            "--mask", tmp_path / "mask.npy", "--out", tmp_path / "o")
    assert code == 0, err
    assert "nearest visible patches" in stdout
    got = np.load(tmp_path / "o" / "chelsea_cat.npz")
    np.testing.assert_array_equal(got["mask"], mask)
    x, pred, loss = reference_run(ref, cat_path, mask)
    np.testing.assert_allclose(got["pred"], pred, rtol=0, atol=1e-5)
    assert f"{loss:.4f}" in stdout  # the loss against norm-pix targets
    # de-normalise independently: patch k of the image, its mean and std as norm_pix_loss defines them
    img = x.permute(1, 2, 0).numpy().astype(np.float64)  # (224, 224, 3), ImageNet-normalised
    patches = img.reshape(14, 16, 14, 16, 3).transpose(0, 2, 1, 3, 4).reshape(196, 16 * 16 * 3)
    mean, std = patches.mean(1), np.sqrt(patches.var(1, ddof=1) + 1e-6)
    want = patches.copy()
    for k in np.flatnonzero(mask):
        near = [k - 14, k + 14, k - 1, k + 1]
        assert not mask[near].any()
        want[k] = pred[k] * std[near].mean() + mean[near].mean()
    want = want.reshape(14, 14, 16, 16, 3).transpose(0, 2, 1, 3, 4).reshape(224, 224, 3)
    np.testing.assert_allclose(got["paste"], want, rtol=0, atol=1e-4)
    # the hidden patches' own statistics (the oracle) would give another picture: the test can tell
    oracle = (pred * std[:, None] + mean[:, None]).reshape(14, 14, 16, 16, 3).transpose(0, 2, 1, 3, 4)
    hidden_px = np.kron(mask.reshape(14, 14), np.ones((16, 16))).astype(bool)
    assert np.abs(oracle.reshape(224, 224, 3)[hidden_px] - want[hidden_px]).max() > 0.1


def test_mae_on_dino_checkpoint_is_refused(cli, tmp_path, cat_path):
    off.dino_backbone(tmp_path / "dino.pth", depth=2)
    code, _, err = cli("mae", cat_path, "--checkpoint", tmp_path / "dino.pth", "--out", tmp_path)
    assert code == 2 and "no MAE decoder" in err


def test_a_dino_checkpoint_is_named_as_one(cli, tmp_path, cat_path):
    """A DINO file has no MAE decoder because DINO makes none, not because a release dropped it."""
    off.dino_full(tmp_path / "dino_training.pth", depth=1)  # the official DINO training layout (teacher/student)
    code, _, err = cli("mae", cat_path, "--checkpoint", tmp_path / "dino_training.pth", "--out", tmp_path / "o")
    assert code == 2 and "is a DINO checkpoint" in err and "no MAE decoder" in err and "encoder-only" not in err
    assert len(err.strip().splitlines()) == 1
