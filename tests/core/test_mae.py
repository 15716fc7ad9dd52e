"""MAE building blocks: sin-cos table, patches, masking convention, views, honest de-normalisation."""

import numpy as np
import torch

from highlighter.config import MAEDecoderConfig, ViTConfig
from highlighter.core.mae import (
    MaskedAutoencoder,
    compose_views,
    denormalise_pred,
    masking_from_mask,
    masking_from_noise,
    patchify,
    sincos_pos_embed_2d,
    unpatchify,
)


def test_sincos_table_by_formula():
    dim, g = 16, 5
    table = sincos_pos_embed_2d(dim, g, cls_token=True)
    assert table.shape == (g * g + 1, dim) and np.all(table[0] == 0)
    for idx in [0, 7, 24]:
        row, col = divmod(idx, g)
        omega = 1.0 / 10000 ** (np.arange(dim // 4) / (dim / 4))
        # first half: the column index (the official meshgrid puts w first), second half: the row
        want = np.concatenate([np.sin(col * omega), np.cos(col * omega), np.sin(row * omega), np.cos(row * omega)])
        np.testing.assert_allclose(table[1 + idx], want, atol=1e-12)


def test_patchify_round_trip_and_order():
    imgs = torch.randn(2, 3, 32, 48)
    x = patchify(imgs, 16)
    assert x.shape == (2, 6, 768)
    torch.testing.assert_close(unpatchify(x, 16, 2, 3), imgs)
    # patch 1 is the second patch of the first row, pixels as (row, column, channel)
    torch.testing.assert_close(x[0, 1].reshape(16, 16, 3), imgs[0, :, :16, 16:32].permute(1, 2, 0))


def test_official_masking_convention():
    noise = torch.tensor([[0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4]])
    ids_keep, mask, ids_restore = masking_from_noise(noise, 0.75)  # keep int(8 * 0.25) = 2
    assert ids_keep.tolist() == [[1, 5]]  # the two smallest noise values
    assert mask.tolist() == [[1, 0, 1, 1, 1, 0, 1, 1]]  # 1 = hidden
    ids_keep2, mask2, _ = masking_from_mask(mask)
    assert sorted(ids_keep2[0].tolist()) == [1, 5] and torch.equal(mask2, mask)


def test_loss_counts_hidden_patches_only():
    model = MaskedAutoencoder(ViTConfig(embed_dim=64, depth=1, num_heads=2, mlp_hidden=128, pos_grid=4),
                              MAEDecoderConfig(embed_dim=32, depth=1, num_heads=2, mlp_hidden=64)).eval()
    imgs = torch.randn(1, 3, 64, 64)
    mask = torch.zeros(1, 16)
    mask[0, [2, 5, 11]] = 1
    with torch.no_grad():
        loss, pred, m = model(imgs, mask=mask)
        per_patch = ((pred - patchify(imgs, 16)) ** 2).mean(-1)[0]
    torch.testing.assert_close(loss, per_patch[[2, 5, 11]].mean())
    # changing a visible patch's target pixels changes the encoder input, not the loss terms' selection
    assert m[0].tolist() == mask[0].tolist()


def test_views_follow_the_notebook():
    p, g = 4, 3
    img = torch.randn(3, p * g, p * g)
    pred = torch.randn(g * g, p * p * 3)
    mask = torch.tensor([1, 0, 0, 1, 1, 0, 1, 0, 1]).float()
    v = compose_views(img, pred, mask, p, norm_pix=False)
    m = unpatchify(mask[None, :, None].expand(1, -1, p * p * 3), p, g)[0].permute(1, 2, 0).numpy()
    y = unpatchify(pred[None], p, g)[0].permute(1, 2, 0).numpy()
    x = img.permute(1, 2, 0).numpy()
    np.testing.assert_allclose(v.masked, x * (1 - m))
    np.testing.assert_allclose(v.reconstruction, y)
    np.testing.assert_allclose(v.paste, x * (1 - m) + y * m)


def test_neighbour_denormalisation_never_reads_hidden_pixels():
    g, p = 4, 2
    img = torch.randn(3, g * p, g * p)
    mask = torch.zeros(g * g)
    mask[[5, 6, 10]] = 1
    pred = torch.randn(g * g, p * p * 3)
    a, note = denormalise_pred(pred, patchify(img[None], p)[0], mask, g, "neighbours")
    img2 = img.clone()
    img2[:, p:2 * p, p:2 * p] += 5.0  # patch 5 is hidden: change its pixels
    b, _ = denormalise_pred(pred, patchify(img2[None], p)[0], mask, g, "neighbours")
    torch.testing.assert_close(a, b)
    assert "nearest visible" in note
    c, note = denormalise_pred(pred, patchify(img2[None], p)[0], mask, g, "oracle")
    assert not torch.allclose(a, c) and "oracle" in note
    # visible patches always use their own statistics
    t = patchify(img[None], p)[0]
    own = pred[0] * (t[0].var() + 1e-6) ** 0.5 + t[0].mean()
    torch.testing.assert_close(a[0], own)
