"""ViT backbones built with timm in the official DINO / DINOv2 / MAE key layout.

The class-token attention of the last block is computed explicitly, softmax(q_cls . K^T / sqrt(d)),
from that block's own qkv projection, so it does not matter whether timm runs the other blocks
with fused (SDPA) attention, which never materialises the softmax.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from highlighter.config import ViTConfig


def build_vit(cfg: ViTConfig, drop_path_rate: float = 0.0, init: bool = True) -> nn.Module:
    """The one place that calls ``timm.create_model``. Random weights; nothing is downloaded. ``init=False``
    leaves the weights uninitialised, for a caller that loads every tensor next (timm's truncated-normal init
    took seconds of the app's start on a busy 2-core CPU).

    The state-dict keys equal the official ones: ``cls_token, pos_embed, patch_embed.proj.*,
    blocks.N.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.fc1,mlp.fc2,ls2.gamma}, norm`` and,
    for DINOv2 with registers, ``register_tokens``.
    """
    import timm

    kwargs: dict = dict(
        pretrained=False,
        img_size=cfg.pos_grid * cfg.patch_size,
        patch_size=cfg.patch_size,
        embed_dim=cfg.embed_dim,
        depth=cfg.depth,
        num_heads=cfg.num_heads,
        # +0.5 so that int(dim * ratio) inside timm lands exactly on mlp_hidden
        mlp_ratio=(cfg.mlp_hidden + 0.5) / cfg.embed_dim,
        qkv_bias=cfg.qkv_bias,
        init_values=1.0 if cfg.layerscale else None,
        num_classes=0,
        global_pool="token",
        class_token=True,
        reg_tokens=0,
        no_embed_class=False,
        final_norm=cfg.final_norm,
        drop_path_rate=drop_path_rate,
        weight_init="" if init else "skip",
    )
    if cfg.swiglu:
        from timm.layers import SwiGLUPacked

        kwargs.update(mlp_layer=SwiGLUPacked, act_layer=nn.SiLU)
    model = timm.create_model("vit_base_patch16_224", **kwargs)
    if cfg.num_register_tokens:
        # Official DINOv2 name and layout: (1, R, D), inserted after the class token, no position embedding.
        model.register_tokens = nn.Parameter(torch.zeros(1, cfg.num_register_tokens, cfg.embed_dim))
    return model


def set_fused_attention(model: nn.Module, enabled: bool) -> None:
    """Switch timm's attention modules between SDPA (fused) and the explicit softmax path.

    On the CPU, SDPA's backward is slow on short sequences: DINO ViT-Ti training at 112/48 crops ran
    1.5x faster with the explicit path (benchmarks/train_throughput.py). On CUDA, fused is faster.
    """
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = enabled


def interpolate_pos_embed(pos_embed: torch.Tensor, grid_h: int, grid_w: int, rule: str = "dino") -> torch.Tensor:
    """Resize a ``(1, 1 + M*M, D)`` position embedding to a ``grid_h x grid_w`` patch grid.

    ``dino`` and ``dinov2``: bicubic with ``scale_factor=((gh + 0.1) / M, (gw + 0.1) / M)``, exactly as
    DINO's ``interpolate_pos_encoding`` (and DINOv2's default ``interpolate_offset=0.1``). The scale factor,
    not the output size, sets the sampling grid, so ``size=`` gives different values (up to ~1e-3 in the
    attention). ``dinov2_reg``: the DINOv2 register models' rule, ``size=(gh, gw)`` with antialiasing.
    The embedding is returned unchanged when the grid already matches, as in both official codes.
    """
    n = pos_embed.shape[1] - 1
    if grid_h * grid_w == n and grid_h == grid_w:
        return pos_embed
    m = int(math.sqrt(n))
    if m * m != n:
        raise ValueError(f"position embedding of {n} patches is not a square grid")
    dim = pos_embed.shape[-1]
    cls_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:]
    work = torch.float64 if patch_pos.dtype == torch.float64 else torch.float32  # half types: bicubic in fp32
    grid = patch_pos.to(work).reshape(1, m, m, dim).permute(0, 3, 1, 2)  # (1, D, M, M)
    if rule in ("dino", "dinov2"):
        grid = F.interpolate(grid, scale_factor=((grid_h + 0.1) / m, (grid_w + 0.1) / m), mode="bicubic")
    elif rule == "dinov2_reg":
        grid = F.interpolate(grid, size=(grid_h, grid_w), mode="bicubic", antialias=True)
    else:
        raise ValueError(f"unknown position-embedding rule {rule!r}")
    if tuple(grid.shape[-2:]) != (grid_h, grid_w):
        raise ValueError(f"interpolated grid {tuple(grid.shape[-2:])} != {(grid_h, grid_w)}")
    patch_pos = grid.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, dim).to(pos_embed.dtype)
    return torch.cat((cls_pos, patch_pos), dim=1)


def block_with_cls_attention(blk: nn.Module, x: torch.Tensor, with_output: bool = True, keys: list | None = None):
    """Run one timm ``Block`` and return ``(x_out, cls_attn)``, cls_attn: (B, nh, N) over all tokens.

    With ``with_output=False`` the block's output is skipped (``x_out`` is None): the attention row
    needs only the qkv projection. A list passed as ``keys`` receives the block's keys (B, N, nh * hd).
    """
    attn = blk.attn
    if getattr(attn, "gate", None) is not None:
        raise ValueError("gated attention is not supported")
    B, N, _ = x.shape
    qkv = attn.qkv(blk.norm1(x)).reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # (B, nh, N, hd)
    q, k = attn.q_norm(q), attn.k_norm(k)
    if keys is not None:
        keys.append(k.transpose(1, 2).reshape(B, N, -1))
    cls_attn = ((q[:, :, :1] @ k.transpose(-2, -1)) * attn.scale).softmax(dim=-1)  # (B, nh, 1, N)
    if not with_output:
        return None, cls_attn[:, :, 0]
    y = F.scaled_dot_product_attention(q, k, v)  # (B, nh, N, hd)
    y = attn.proj(attn.norm(y.transpose(1, 2).reshape(B, N, attn.attn_dim)))
    x = x + blk.drop_path1(blk.ls1(y))
    x = x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))
    return x, cls_attn[:, :, 0]


def prepare_tokens(vit: nn.Module, cfg: ViTConfig, img: torch.Tensor) -> torch.Tensor:
    """Patch embedding + class token + interpolated position embedding (+ registers): (B, 1 [+ R] + N, D)."""
    B, _, H, W = img.shape
    p = cfg.patch_size
    if H % p or W % p:
        raise ValueError(f"input {H}x{W} is not a multiple of the patch size {p}")
    x = vit.patch_embed.proj(img).flatten(2).transpose(1, 2)  # (B, gh*gw, D)
    x = vit.patch_embed.norm(x)
    x = torch.cat((vit.cls_token.expand(B, -1, -1), x), dim=1)  # (B, 1 + gh*gw, D)
    x = x + interpolate_pos_embed(vit.pos_embed, H // p, W // p, cfg.pos_interp)
    if cfg.num_register_tokens:
        x = torch.cat((x[:, :1], vit.register_tokens.expand(B, -1, -1), x[:, 1:]), dim=1)  # (B, 1 + R + N, D)
    return x


def forward_cls(vit: nn.Module, cfg: ViTConfig, img: torch.Tensor) -> torch.Tensor:
    """The final-norm class token (B, D) at any resolution: what DINO's heads and kNN use."""
    x = prepare_tokens(vit, cfg, img)
    for blk in vit.blocks:
        x = blk(x)
    return vit.norm(x)[:, 0]


class AttentionViT(nn.Module):
    """A backbone whose forward returns the last block's class-token attention on the patch grid.

    ``forward(img)`` with img (B, 3, H, W), H and W multiples of the patch size, returns
    ``attention`` (B, heads, H/p, W/p): the raw softmax row of the class token, with the class
    and register tokens dropped and not renormalised; and, with ``with_features=True``, the
    final-norm class-token features (B, D). A list passed as ``tokens`` receives the last block's
    output patch tokens after the final norm, class and register tokens dropped, (B, h*w, D): DINOv2's
    ``x_norm_patchtokens``, what its PCA demo uses, from the same forward pass.
    """

    def __init__(self, vit: nn.Module, cfg: ViTConfig):
        super().__init__()
        self.vit = vit
        self.cfg = cfg

    def prepare_tokens(self, img: torch.Tensor) -> torch.Tensor:
        return prepare_tokens(self.vit, self.cfg, img)

    def forward(self, img: torch.Tensor, with_features: bool = False, keys: list | None = None,
                tokens: list | None = None):
        B, _, H, W = img.shape
        p = self.cfg.patch_size
        x = self.prepare_tokens(img)
        for blk in self.vit.blocks[:-1]:
            x = blk(x)
        need_output = with_features or tokens is not None
        x, attn = block_with_cls_attention(self.vit.blocks[-1], x, with_output=need_output, keys=keys)
        attn = attn[:, :, 1 + self.cfg.num_register_tokens:].reshape(B, -1, H // p, W // p)  # (B, nh, gh, gw)
        if need_output:
            x = self.vit.norm(x)
        if tokens is not None:
            tokens.append(x[:, 1 + self.cfg.num_register_tokens:])  # (B, gh*gw, D)
        if not with_features:
            return attn
        return attn, x[:, 0]
