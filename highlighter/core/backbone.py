"""ViT backbones built with timm in the official DINO / DINOv2 / MAE key layout, and the position-embedding
interpolation each family uses. The class-token attention is computed in ``core.attention``."""

from __future__ import annotations

import math
from functools import partial

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
    for DINOv2 with registers, ``register_tokens``. A DINOv3 model (``cfg.rope``) has no ``pos_embed`` but
    ``rope_embed.periods`` (the official buffer), and its registers (DINOv3's ``storage_tokens``) under the
    DINOv2 name ``register_tokens``; its LayerNorms use ``cfg.norm_eps``.
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
    if cfg.rope:
        kwargs.update(norm_layer=partial(nn.LayerNorm, eps=cfg.norm_eps))
    if cfg.swiglu:
        from timm.layers import SwiGLUPacked

        kwargs.update(mlp_layer=SwiGLUPacked, act_layer=nn.SiLU)
    model = timm.create_model("vit_base_patch16_224", **kwargs)
    if cfg.num_register_tokens:
        # Official DINOv2 name and layout: (1, R, D), inserted after the class token, no position embedding.
        model.register_tokens = nn.Parameter(torch.zeros(1, cfg.num_register_tokens, cfg.embed_dim))
    if cfg.rope:
        model.pos_embed = None  # no learned position embedding (set here: timm's pos_embed="none" is recent)
        model.rope_embed = RopePeriods(cfg.embed_dim // cfg.num_heads)
    return model


class RopePeriods(nn.Module):
    """DINOv3's rotary position encoding at evaluation: the official ``RopePositionEmbedding`` with its
    ``periods`` buffer (D_head / 4 values, loaded from the file) and no coordinate augmentation (the shift,
    jitter and rescale of the official module act only in training)."""

    def __init__(self, head_dim: int, base: float = 100.0):
        super().__init__()
        if head_dim % 4:
            raise ValueError(f"RoPE needs a head dim divisible by 4, got {head_dim}")
        q = head_dim // 4
        self.register_buffer("periods", base ** (2 * torch.arange(q, dtype=torch.float32) / (head_dim // 2)))

    def forward(self, grid_h: int, grid_w: int) -> tuple[torch.Tensor, torch.Tensor]:
        return rope_sincos(self.periods, grid_h, grid_w)


def rope_sincos(periods: torch.Tensor, grid_h: int, grid_w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sin, cos), each (h*w, D_head), float32: the official ``RopePositionEmbedding.forward`` with
    ``normalize_coords="separate"`` (every DINOv3 release): patch centres at (i + 0.5) / h and (j + 0.5) / w,
    mapped to [-1, 1], angles 2 pi coord / period, [h angles, w angles] tiled twice."""
    dd = {"device": periods.device, "dtype": torch.float32}
    periods = periods.to(torch.float32)
    coords_h = torch.arange(0.5, grid_h, **dd) / grid_h
    coords_w = torch.arange(0.5, grid_w, **dd) / grid_w
    coords = torch.stack(torch.meshgrid(coords_h, coords_w, indexing="ij"), dim=-1).flatten(0, 1)  # (h*w, 2)
    coords = 2.0 * coords - 1.0
    angles = (2 * math.pi * coords[:, :, None] / periods[None, None, :]).flatten(1, 2).tile(2)  # (h*w, D_head)
    return torch.sin(angles), torch.cos(angles)


def apply_rope(q: torch.Tensor, k: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]):
    """The official ``SelfAttention.apply_rope``: the last h*w tokens of q and k (B, heads, N, D_head) rotated,
    the prefix (class token, registers) left as it is, computed in the rope's dtype (float32) and cast back."""
    sin, cos = rope
    prefix = q.shape[-2] - sin.shape[-2]
    if prefix < 0:
        raise ValueError(f"RoPE for {sin.shape[-2]} patches on {q.shape[-2]} tokens")

    def rotate(t: torch.Tensor) -> torch.Tensor:
        dtype = t.dtype
        t = t.to(sin.dtype)
        patches = t[:, :, prefix:]
        a, b = patches.chunk(2, dim=-1)
        rotated = patches * cos + torch.cat([-b, a], dim=-1) * sin
        return torch.cat((t[:, :, :prefix], rotated), dim=-2).to(dtype)

    return rotate(q), rotate(k)


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
