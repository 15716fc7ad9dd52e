"""Position-embedding interpolation and the explicit class-token attention."""

import math

import pytest
import torch
import torch.nn.functional as F

from highlighter.config import ViTConfig
from highlighter.core.attention import AttentionViT
from highlighter.core.backbone import build_vit, interpolate_pos_embed


def official_dino_interpolate(pos_embed, w0, h0):
    """DINO's interpolate_pos_encoding body (w0 rows, h0 columns)."""
    N = pos_embed.shape[1] - 1
    dim = pos_embed.shape[-1]
    class_pos, patch_pos = pos_embed[:, 0], pos_embed[:, 1:]
    w0, h0 = w0 + 0.1, h0 + 0.1
    patch_pos = F.interpolate(patch_pos.reshape(1, int(math.sqrt(N)), int(math.sqrt(N)), dim).permute(0, 3, 1, 2),
                              scale_factor=(w0 / math.sqrt(N), h0 / math.sqrt(N)), mode="bicubic")
    assert int(w0) == patch_pos.shape[-2] and int(h0) == patch_pos.shape[-1]
    return torch.cat((class_pos.unsqueeze(0), patch_pos.permute(0, 2, 3, 1).view(1, -1, dim)), dim=1)


@pytest.mark.parametrize("grid", [(30, 30), (6, 6), (15, 26), (28, 20)])
def test_dino_rule_matches_official_and_differs_from_size(grid):
    torch.manual_seed(0)
    pos = torch.randn(1, 14 * 14 + 1, 64)
    ours = interpolate_pos_embed(pos, *grid, rule="dino")
    torch.testing.assert_close(ours, official_dino_interpolate(pos, *grid), rtol=0, atol=0)
    # the scale factor, not the output size, sets the sampling grid: `size=` is a different function
    by_size = F.interpolate(pos[:, 1:].reshape(1, 14, 14, 64).permute(0, 3, 1, 2), size=grid, mode="bicubic")
    by_size = by_size.permute(0, 2, 3, 1).reshape(1, -1, 64)
    assert (ours[:, 1:] - by_size).abs().max() > 1e-3


def test_same_grid_returns_the_stored_embedding():
    pos = torch.randn(1, 197, 32)
    assert interpolate_pos_embed(pos, 14, 14) is pos


def test_dinov2_register_rule_uses_size_with_antialias():
    pos = torch.randn(1, 16 * 16 + 1, 32)
    got = interpolate_pos_embed(pos, 10, 12, rule="dinov2_reg")
    want = F.interpolate(pos[:, 1:].reshape(1, 16, 16, 32).permute(0, 3, 1, 2), size=(10, 12), mode="bicubic",
                         antialias=True).permute(0, 2, 3, 1).reshape(1, -1, 32)
    torch.testing.assert_close(got[:, 1:], want, rtol=0, atol=0)
    torch.testing.assert_close(got[:, :1], pos[:, :1])


@pytest.mark.parametrize("fused", [True, False])
def test_cls_attention_equals_the_softmax_of_the_last_block(fused):
    """Recompute softmax(q_cls K^T / sqrt(d)) from the last block's qkv weights, independently."""
    from timm.layers import set_fused_attn

    cfg = ViTConfig(embed_dim=128, depth=3, num_heads=4, mlp_hidden=256, num_register_tokens=2,
                    pos_interp="dinov2_reg")
    set_fused_attn(fused)
    try:
        model = AttentionViT(build_vit(cfg), cfg).eval()
    finally:
        set_fused_attn(True)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
        img = torch.randn(2, 3, 96, 160)  # non-square: 6 x 10 patches
        attn, feats = model(img, with_features=True)
        x = model.prepare_tokens(img)
        for blk in model.vit.blocks[:-1]:
            x = blk(x)
        last = model.vit.blocks[-1]
        y = F.layer_norm(x, (128,), last.norm1.weight, last.norm1.bias, eps=1e-6)
        qkv = y @ last.attn.qkv.weight.T + last.attn.qkv.bias  # (B, N, 3 * 128)
        q, k = qkv[..., :128], qkv[..., 128:256]
        heads = []
        for h in range(4):
            qh, kh = q[..., h * 32:(h + 1) * 32], k[..., h * 32:(h + 1) * 32]
            heads.append(torch.softmax(qh[:, :1] @ kh.transpose(1, 2) / math.sqrt(32), dim=-1)[:, 0])
        want = torch.stack(heads, 1)[:, :, 1 + 2:].reshape(2, 4, 6, 10)  # drop class + 2 registers
        torch.testing.assert_close(attn, want, rtol=0, atol=1e-6)
        # the features are the ordinary forward's class token
        ref = model.vit.norm(last(x))[:, 0]
        torch.testing.assert_close(feats, ref, rtol=1e-5, atol=1e-5)
    assert attn.shape == (2, 4, 6, 10)
    assert torch.all(attn.sum((-1, -2)) < 1)  # class and register tokens were dropped, not renormalised


def test_input_must_be_a_multiple_of_the_patch():
    cfg = ViTConfig(embed_dim=64, depth=1, num_heads=1, mlp_hidden=64)
    with pytest.raises(ValueError, match="multiple of the patch"):
        AttentionViT(build_vit(cfg), cfg)(torch.zeros(1, 3, 100, 96))
