"""The class-token attention: where a frame's or a photo's attention map is computed.

The last block's class-token attention is computed explicitly, softmax(q_cls . K^T / sqrt(d)), from that
block's own qkv projection, so it does not matter whether timm runs the other blocks with fused (SDPA)
attention, which never materialises the softmax. ``AttentionViT`` wraps a backbone so that its forward
returns that row on the patch grid, for every road: photos, frames, the live graphs (``runtime.export``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from highlighter.config import ViTConfig
from highlighter.core.backbone import apply_rope, interpolate_pos_embed
from highlighter.preprocess import IMAGENET_MEAN, IMAGENET_STD


def block_with_cls_attention(blk: nn.Module, x: torch.Tensor, with_output: bool = True, keys: list | None = None,
                             rope: tuple[torch.Tensor, torch.Tensor] | None = None, with_attention: bool = True):
    """Run one timm ``Block`` and return ``(x_out, cls_attn)``, cls_attn: (B, nh, N) over all tokens.

    With ``with_output=False`` the block's output is skipped (``x_out`` is None): the attention row
    needs only the qkv projection. A list passed as ``keys`` receives the block's keys (B, N, nh * hd), as the
    qkv projection gives them (before RoPE). ``rope``: DINOv3's (sin, cos) for the patch grid, applied to the
    patch tokens' queries and keys as the official attention applies it. ``with_attention=False``: the block's
    output only (cls_attn is None), for the blocks before the last one of a RoPE model, which timm's
    ``Block.forward`` cannot run.
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
    if rope is not None:
        q, k = apply_rope(q, k, rope)
    cls_attn = None
    if with_attention:
        cls_attn = ((q[:, :, :1] @ k.transpose(-2, -1)) * attn.scale).softmax(dim=-1)[:, :, 0]  # (B, nh, N)
    if not with_output:
        return None, cls_attn
    y = F.scaled_dot_product_attention(q, k, v)  # (B, nh, N, hd)
    y = attn.proj(attn.norm(y.transpose(1, 2).reshape(B, N, attn.attn_dim)))
    x = x + blk.drop_path1(blk.ls1(y))
    x = x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))
    return x, cls_attn


def run_block(blk: nn.Module, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """One block's output: timm's own forward, or, with DINOv3's RoPE, the same block with the rotation."""
    if rope is None:
        return blk(x)
    return block_with_cls_attention(blk, x, rope=rope, with_attention=False)[0]


def grid_rope(vit: nn.Module, cfg: ViTConfig, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """DINOv3's (sin, cos) for a patch grid, or None for a model without RoPE."""
    return vit.rope_embed(*grid) if cfg.rope else None


def prepare_tokens(vit: nn.Module, cfg: ViTConfig, img: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
    """Patch embedding + class token + interpolated position embedding (+ registers): (B, 1 [+ R] + N, D).
    DINOv3 (``cfg.rope``): no position embedding here; its position enters each block's attention (RoPE).
    ``pos``: the position embedding already interpolated for this grid (1, 1 + N, D)."""
    B, _, H, W = img.shape
    p = cfg.patch_size
    if H % p or W % p:
        raise ValueError(f"input {H}x{W} is not a multiple of the patch size {p}")
    x = vit.patch_embed.proj(img).flatten(2).transpose(1, 2)  # (B, gh*gw, D)
    x = vit.patch_embed.norm(x)
    x = torch.cat((vit.cls_token.expand(B, -1, -1).to(x.dtype), x), dim=1)  # (B, 1 + gh*gw, D)
    if not cfg.rope:
        x = x + (interpolate_pos_embed(vit.pos_embed, H // p, W // p, cfg.pos_interp) if pos is None else pos)
    if cfg.num_register_tokens:
        x = torch.cat((x[:, :1], vit.register_tokens.expand(B, -1, -1), x[:, 1:]), dim=1)  # (B, 1 + R + N, D)
    return x


def forward_cls(vit: nn.Module, cfg: ViTConfig, img: torch.Tensor) -> torch.Tensor:
    """The final-norm class token (B, D) at any resolution: what DINO's heads and kNN use."""
    x = prepare_tokens(vit, cfg, img)
    rope = grid_rope(vit, cfg, (img.shape[-2] // cfg.patch_size, img.shape[-1] // cfg.patch_size))
    for blk in vit.blocks:
        x = run_block(blk, x, rope)
    return vit.norm(x)[:, 0]


class AttentionViT(nn.Module):
    """The one model wrapper: a backbone whose forward returns the last block's class-token attention on the
    patch grid. It serves every road: photos and frames in eager torch (``runtime.predictor.TorchPredictor``),
    the live ONNX graphs (``runtime.export``), training probes and tracking.

    ``forward(img)`` with img (B, 3, H, W), H and W multiples of the patch size, returns ``attention``
    (B, heads, H/p, W/p): the raw softmax row of the class token, with the class and register tokens dropped and
    not renormalised; and, with ``with_features=True``, the final-norm class-token features (B, D). A list passed
    as ``tokens`` receives the last block's output patch tokens after the final norm, class and register tokens
    dropped, (B, h*w, D): DINOv2's ``x_norm_patchtokens``, what its PCA demo uses, from the same forward pass;
    one passed as ``keys``, the last block's patch keys (B, h*w, D), likewise.

    ``pixels=True``: img is RGB in [0, 255] (what the predictors' preprocessing gives) and the model applies
    ToTensor's /255 and the ImageNet normalisation itself, in float32, as the same operations in the same order
    as ``preprocess.normalise``: the numbers equal those of a normalised input bit for bit. ``image_size`` (H, W):
    the position embedding (or DINOv3's RoPE) is computed once for that grid, as an exported graph needs; other
    sizes are still interpolated per call.
    """

    def __init__(self, vit: nn.Module, cfg: ViTConfig, image_size: tuple[int, int] | None = None,
                 pixels: bool = False):
        super().__init__()
        self.vit, self.cfg, self.pixels = vit, cfg, pixels
        self.image_size = None
        if pixels:
            self.register_buffer("mean", torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1))
        if image_size is not None:
            H, W = image_size
            p = cfg.patch_size
            if H % p or W % p:
                raise ValueError(f"image size {H}x{W} must be a multiple of the patch size {p}")
            self.image_size = (H, W)
            with torch.no_grad():
                if cfg.rope:  # DINOv3: RoPE's sines and cosines for the fixed grid
                    sin, cos = vit.rope_embed(H // p, W // p)
                    self.register_buffer("rope_sin", sin.clone())  # (h*w, D_head)
                    self.register_buffer("rope_cos", cos.clone())
                else:
                    pos = interpolate_pos_embed(vit.pos_embed.detach(), H // p, W // p, cfg.pos_interp)
                    self.register_buffer("pos", pos.clone())  # (1, 1 + h*w, D)

    def _apply(self, fn, recurse=True):
        """The normalisation and RoPE's sines and cosines stay float32 when the model is cast
        (``.to(torch.bfloat16)``): the official code computes the rotation in float32 whatever the model's dtype,
        and the photo is normalised in float32 before it meets the weights; only their device follows."""
        kept = {n: self._buffers[n] for n in ("rope_sin", "rope_cos", "mean", "std")
                if self._buffers.get(n) is not None}
        super()._apply(fn, recurse)
        for n, t in kept.items():
            self._buffers[n] = t.to(self._buffers[n].device)
        return self

    def prepare_tokens(self, img: torch.Tensor) -> torch.Tensor:
        if self.pixels:
            img = ((img.float() / 255.0 - self.mean) / self.std).to(self.vit.patch_embed.proj.weight.dtype)
        fixed = self.image_size is not None and tuple(img.shape[-2:]) == self.image_size
        return prepare_tokens(self.vit, self.cfg, img, self.pos if fixed and not self.cfg.rope else None)

    def forward(self, img: torch.Tensor, with_features: bool = False, keys: list | None = None,
                tokens: list | None = None):
        _, _, H, W = img.shape
        p = self.cfg.patch_size
        grid = (H // p, W // p)
        if self.cfg.rope:
            fixed = self.image_size is not None and (H, W) == self.image_size
            rope = (self.rope_sin, self.rope_cos) if fixed else grid_rope(self.vit, self.cfg, grid)
        else:
            rope = None
        n_prefix = 1 + self.cfg.num_register_tokens
        got_keys: list | None = [] if keys is not None else None
        out = last_blocks(self.vit.blocks, self.vit.norm, self.prepare_tokens(img), n_prefix, grid,
                          with_features=with_features, keys=got_keys, tokens=tokens, rope=rope)
        if keys is not None:
            keys.append(got_keys[0][:, n_prefix:])
        return out


def last_blocks(blocks, norm: nn.Module, x: torch.Tensor, n_prefix: int, grid: tuple[int, int],
                with_features: bool = False, keys: list | None = None, tokens: list | None = None,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None):
    """The body of ``AttentionViT``'s forward: the blocks on
    the prepared tokens x (B, n_prefix + h*w, D), the last one with its class-token attention, which is returned
    on the patch grid (B, heads, h, w), prefix (class, registers) columns dropped and not renormalised; with
    ``with_features``, also the final-norm class token (B, D). ``tokens`` receives the final-norm patch tokens
    (B, h*w, D) and ``keys`` the last block's keys over all tokens (B, N, D). ``rope``: DINOv3's (sin, cos) for
    the grid, used in every block."""
    B = x.shape[0]
    for blk in blocks[:-1]:
        x = run_block(blk, x, rope)
    need_output = with_features or tokens is not None
    x, attn = block_with_cls_attention(blocks[-1], x, with_output=need_output, keys=keys, rope=rope)
    attn = attn[:, :, n_prefix:].reshape(B, -1, *grid)
    if need_output:
        x = norm(x)
    if tokens is not None:
        tokens.append(x[:, n_prefix:])
    if not with_features:
        return attn
    return attn, x[:, 0]
