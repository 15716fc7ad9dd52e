"""Masked autoencoder (He et al. 2021) in the official ``models_mae.py`` key layout.

Encoder: ``cls_token, pos_embed, patch_embed, blocks.*, norm``; decoder: ``decoder_embed, mask_token,
decoder_pos_embed, decoder_blocks.*, decoder_norm, decoder_pred``. Position embeddings are fixed
2-D sin-cos. Masks follow the official convention: 0 is keep, 1 is remove (hidden).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn as nn

from highlighter.config import MAEDecoderConfig, ViTConfig
from highlighter.core.backbone import build_vit
from highlighter.preprocess import IMAGENET_MEAN as _MEAN
from highlighter.preprocess import IMAGENET_STD as _STD
from highlighter.preprocess import to_display  # noqa: F401 - re-exported: the MAE views' display

IMAGENET_MEAN = np.array(_MEAN)
IMAGENET_STD = np.array(_STD)


# ----------------------------------------------------------------------------- position embeddings
def sincos_1d(dim: int, pos: np.ndarray) -> np.ndarray:
    """(M,) positions -> (M, dim): [sin(pos * omega), cos(pos * omega)], omega = 1 / 10000^(2i/dim)."""
    omega = np.arange(dim // 2, dtype=np.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega  # (dim/2,)
    out = np.einsum("m,d->md", pos.reshape(-1).astype(np.float64), omega)  # (M, dim/2)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_pos_embed_2d(dim: int, grid_size: int, cls_token: bool = True) -> np.ndarray:
    """Official MAE 2-D sin-cos table: (grid*grid [+1], dim); the first half encodes the column index."""
    if dim % 4:
        raise ValueError(f"sin-cos embedding needs a dim divisible by 4, got {dim}")
    coords = np.arange(grid_size, dtype=np.float32)
    grid = np.stack(np.meshgrid(coords, coords), axis=0).reshape(2, 1, grid_size, grid_size)  # w first
    emb = np.concatenate([sincos_1d(dim // 2, grid[0]), sincos_1d(dim // 2, grid[1])], axis=1)
    if cls_token:
        emb = np.concatenate([np.zeros([1, dim]), emb], axis=0)
    return emb


# ----------------------------------------------------------------------------- patches and masks
def patchify(imgs: torch.Tensor, p: int) -> torch.Tensor:
    """imgs: (N, 3, H, W) -> (N, L, p*p*3), patches in row-major order, pixels as (p, q, c)."""
    N, C, H, W = imgs.shape
    h, w = H // p, W // p
    x = imgs.reshape(N, C, h, p, w, p)
    x = torch.einsum("nchpwq->nhwpqc", x)
    return x.reshape(N, h * w, p * p * C)


def unpatchify(x: torch.Tensor, p: int, h: int, w: int | None = None) -> torch.Tensor:
    """x: (N, L, p*p*3) -> (N, 3, h*p, w*p)."""
    w = h if w is None else w
    N = x.shape[0]
    x = x.reshape(N, h, w, p, p, 3)
    x = torch.einsum("nhwpqc->nchpwq", x)
    return x.reshape(N, 3, h * p, w * p)


def masking_from_noise(noise: torch.Tensor, mask_ratio: float):
    """Official random masking: argsort the noise ascending, keep the first int(L * (1 - ratio)).

    noise: (N, L). Returns ids_keep (N, K), mask (N, L) with 1 = hidden, ids_restore (N, L).
    """
    N, L = noise.shape
    len_keep = int(L * (1 - mask_ratio))
    ids_shuffle = torch.argsort(noise, dim=1)  # small is keep, large is remove
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mask = torch.ones(N, L, device=noise.device)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, dim=1, index=ids_restore)
    return ids_shuffle[:, :len_keep], mask, ids_restore


def check_mask(mask, num_patches: int) -> np.ndarray:
    """An explicit MAE mask as (L,) uint8, 1 = hidden; ValueError unless it holds ``num_patches`` zeros and
    ones with at least one patch visible."""
    m = np.asarray(mask).reshape(-1)
    if m.shape[0] != num_patches or not np.isin(m, (0, 1)).all():
        raise ValueError(f"need {num_patches} zeros and ones (1 = hidden), got {m.size} values")
    if m.all():
        raise ValueError("every patch is hidden; leave at least one visible")
    return m.astype(np.uint8)


def masking_from_mask(mask: torch.Tensor):
    """An explicit mask (N, L), 1 = hidden, every row hiding the same count -> (ids_keep, mask, ids_restore)."""
    mask = mask.float()
    counts = mask.sum(dim=1)
    if not torch.all(counts == counts[0]):
        raise ValueError("every mask in a batch must hide the same number of patches")
    if int(counts[0]) == mask.shape[1]:
        raise ValueError("the mask hides every patch: the encoder needs at least one visible patch")
    # visible patches first (in index order), hidden after: a noise whose argsort keeps exactly them
    ids_shuffle = torch.argsort(mask, dim=1, stable=True)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    len_keep = mask.shape[1] - int(counts[0])
    return ids_shuffle[:, :len_keep], mask, ids_restore


# ----------------------------------------------------------------------------- the model
class MaskedAutoencoder(nn.Module):
    """MAE with a timm ViT encoder that sees only the visible patches, and a small decoder."""

    def __init__(self, vit_cfg: ViTConfig, dec_cfg: MAEDecoderConfig | None):
        super().__init__()
        from timm.models.vision_transformer import Block

        self.cfg, self.dec_cfg = vit_cfg, dec_cfg
        vit = build_vit(vit_cfg)
        self.cls_token, self.pos_embed = vit.cls_token, vit.pos_embed
        self.patch_embed, self.blocks, self.norm = vit.patch_embed, vit.blocks, vit.norm
        self.pos_embed.requires_grad_(False)
        with torch.no_grad():
            table = sincos_pos_embed_2d(vit_cfg.embed_dim, vit_cfg.pos_grid)
            self.pos_embed.copy_(torch.from_numpy(table).float()[None])
        if dec_cfg is None:
            return
        p, dd = vit_cfg.patch_size, dec_cfg.embed_dim
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        self.decoder_embed = nn.Linear(vit_cfg.embed_dim, dd, bias=True)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        table = sincos_pos_embed_2d(dd, vit_cfg.pos_grid)
        self.decoder_pos_embed = nn.Parameter(torch.from_numpy(table).float()[None], requires_grad=False)
        self.decoder_blocks = nn.ModuleList(
            Block(dd, dec_cfg.num_heads, (dec_cfg.mlp_hidden + 0.5) / dd, qkv_bias=True, norm_layer=norm_layer)
            for _ in range(dec_cfg.depth)
        )
        self.decoder_norm = norm_layer(dd)
        self.decoder_pred = nn.Linear(dd, p * p * 3, bias=True)
        nn.init.normal_(self.mask_token, std=0.02)

    @property
    def has_decoder(self) -> bool:
        return self.dec_cfg is not None

    @property
    def num_patches(self) -> int:
        return self.cfg.pos_grid**2

    @property
    def input_size(self) -> int:
        return self.cfg.pos_grid * self.cfg.patch_size

    def forward_encoder(self, imgs: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """imgs (N, 3, H, W), ids_keep (N, K) -> latent (N, 1 + K, D): only visible patches are encoded."""
        x = self.patch_embed.proj(imgs).flatten(2).transpose(1, 2)  # (N, L, D)
        if x.shape[1] != self.num_patches:
            raise ValueError(f"MAE input must be {self.input_size}x{self.input_size}, got {tuple(imgs.shape[-2:])}")
        x = x + self.pos_embed[:, 1:, :]
        x = torch.gather(x, dim=1, index=ids_keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))  # (N, K, D)
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
        x = torch.cat((cls, x), dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """latent (N, 1 + K, D) -> pred (N, L, p*p*3), mask tokens filling the hidden positions."""
        x = self.decoder_embed(latent)  # (N, 1 + K, Dd)
        n_mask = ids_restore.shape[1] + 1 - x.shape[1]
        x_ = torch.cat([x[:, 1:, :], self.mask_token.expand(x.shape[0], n_mask, -1)], dim=1)  # no cls
        x_ = torch.gather(x_, dim=1, index=ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[2]))  # unshuffle
        x = torch.cat([x[:, :1, :], x_], dim=1) + self.decoder_pos_embed  # (N, 1 + L, Dd)
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:, :]

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error on the hidden patches only (all patches when none is hidden); per-patch
        normalised targets if norm_pix_loss."""
        target = patchify(imgs, self.cfg.patch_size)
        if self.dec_cfg is not None and self.dec_cfg.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        loss = ((pred - target) ** 2).mean(dim=-1)  # (N, L) per patch
        hidden = mask.sum()
        # with nothing hidden (mask ratio 0) the official 0/0 is undefined: fall back to every patch
        return torch.where(hidden > 0, (loss * mask).sum() / hidden.clamp_min(1), loss.mean())

    def forward(self, imgs: torch.Tensor, mask_ratio: float = 0.75, noise: torch.Tensor | None = None,
                mask: torch.Tensor | None = None):
        """Returns (loss, pred (N, L, p*p*3), mask (N, L) with 1 = hidden)."""
        if not self.has_decoder:
            raise ValueError("this MAE has no decoder")
        N = imgs.shape[0]
        if mask is not None:
            ids_keep, mask, ids_restore = masking_from_mask(mask.to(imgs.device))
        else:
            if noise is None:
                noise = torch.rand(N, self.num_patches, device=imgs.device)
            ids_keep, mask, ids_restore = masking_from_noise(noise, mask_ratio)
        pred = self.forward_decoder(self.forward_encoder(imgs, ids_keep), ids_restore)
        return self.forward_loss(imgs, pred, mask), pred, mask


@torch.no_grad()
def init_mae_weights(model: MaskedAutoencoder) -> None:
    """models_mae.py's initialize_weights: xavier-uniform linears and patch projection (as a linear),
    zero biases, unit LayerNorms, N(0, 0.02) class and mask tokens; sin-cos tables stay fixed."""
    w = model.patch_embed.proj.weight
    nn.init.xavier_uniform_(w.view(w.shape[0], -1))
    nn.init.normal_(model.cls_token, std=0.02)
    if model.has_decoder:
        nn.init.normal_(model.mask_token, std=0.02)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# ----------------------------------------------------------------------------- views for people
@dataclass
class MAEViews:
    """The four panels of the official demo notebook, (H, W, 3) float32 in ImageNet-normalised space."""

    original: np.ndarray
    masked: np.ndarray
    reconstruction: np.ndarray
    paste: np.ndarray
    note: str  # what the reconstruction shows, and with which statistics


DENORM_MODES = ("neighbours", "oracle")


def patch_stats(patches: torch.Tensor):
    """Per-patch mean and std as norm_pix_loss uses them: (L, P) -> (L, 1), (L, 1)."""
    return patches.mean(dim=-1, keepdim=True), (patches.var(dim=-1, keepdim=True) + 1.0e-6) ** 0.5


def denormalise_pred(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, grid: int,
                     mode: str = "neighbours", k: int = 4):
    """Undo norm-pix targets: pred (L, P) per-patch normalised -> pixel (normalised-image) space.

    Visible patches use their own statistics. Hidden ones use, with ``neighbours``, the mean of the
    statistics of the ``k`` nearest visible patches (no hidden pixel is looked at), or with ``oracle``
    their own statistics, which reads the hidden pixels and so is not a fair reconstruction.
    Returns (pixels (L, P), note).
    """
    mean, std = patch_stats(target)
    hidden = mask.bool()
    if mode == "oracle":
        note = "norm-pix checkpoint: hidden patches de-normalised with their own (true) mean/std - oracle view"
        return pred * std + mean, note
    if mode != "neighbours":
        raise ValueError(f"unknown de-normalisation {mode!r}")
    rows, cols = torch.div(torch.arange(grid * grid), grid, rounding_mode="floor"), torch.arange(grid * grid) % grid
    coords = torch.stack([rows, cols], dim=1).float()  # (L, 2)
    vis = torch.nonzero(~hidden).squeeze(1)
    dist = torch.cdist(coords, coords[vis])  # (L, V)
    near = vis[dist.topk(min(k, len(vis)), dim=1, largest=False).indices]  # (L, k)
    est_mean, est_std = mean[near].mean(dim=1), std[near].mean(dim=1)  # (L, 1)
    mean = torch.where(hidden[:, None], est_mean, mean)
    std = torch.where(hidden[:, None], est_std, std)
    note = (f"norm-pix checkpoint: hidden patches de-normalised with the mean/std of the {k} nearest "
            "visible patches (their own pixels are not used)")
    return pred * std + mean, note


def compose_views(img: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, p: int, norm_pix: bool,
                  denorm: str = "neighbours") -> MAEViews:
    """As the official notebook: masked = x(1-m), reconstruction = unpatchify(pred), paste = x(1-m) + y m.

    img (3, H, W) normalised, pred (L, p*p*3), mask (L,) with 1 = hidden.
    """
    _, H, W = img.shape
    h, w = H // p, W // p
    note = "reconstruction in pixel space (checkpoint trained without norm-pix targets)"
    if norm_pix:
        pred, note = denormalise_pred(pred, patchify(img[None], p)[0], mask, h, denorm)
    y = unpatchify(pred[None], p, h, w)[0]  # (3, H, W)
    m = unpatchify(mask[None, :, None].expand(1, -1, p * p * 3).float(), p, h, w)[0]
    masked = img * (1 - m)

    def hwc(t: torch.Tensor) -> np.ndarray:
        return t.permute(1, 2, 0).detach().cpu().float().numpy()

    return MAEViews(hwc(img), hwc(masked), hwc(y), hwc(masked + y * m), note)

