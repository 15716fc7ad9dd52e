"""Plain, frozen configuration records.

They are saved inside checkpoints as plain dicts (``asdict``), never as pickled objects, so every
checkpoint the project writes loads with ``torch.load(weights_only=True)``.
Imports nothing from highlighter.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

# How position embeddings are resized to another patch grid (see core/backbone.py).
POS_INTERP_RULES = ("dino", "dinov2", "dinov2_reg")

# Official head counts by (embed_dim, depth). The number of heads cannot be read from the
# weights, and dim/64 is wrong for ViT-H/14 (1280 / 16 heads).
KNOWN_HEADS = {
    (192, 12): 3,  # ViT-Ti
    (384, 12): 6,  # ViT-S
    (768, 12): 12,  # ViT-B
    (1024, 24): 16,  # ViT-L
    (1280, 32): 16,  # ViT-H
    (1536, 40): 24,  # ViT-g (DINOv2)
}
# Official MAE decoders: (decoder_embed_dim, decoder_depth) -> heads.
KNOWN_DECODER_HEADS = {(512, 8): 16}

ARCH_DIMS = {"vit_tiny": 192, "vit_small": 384, "vit_base": 768, "vit_large": 1024, "vit_huge": 1280,
             "vit_giant": 1536}


def default_num_heads(dim: int, depth: int, table: dict[tuple[int, int], int] = KNOWN_HEADS) -> int:
    """Official head count when the architecture is a known one, else dim/64."""
    return table.get((dim, depth), max(1, dim // 64))


class _Record:
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class ViTConfig(_Record):
    """A ViT backbone in the official DINO / DINOv2 / MAE key layout."""

    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    patch_size: int = 16
    pos_grid: int = 14  # side of the square position-embedding grid stored in the weights
    mlp_hidden: int = 1536
    swiglu: bool = False  # DINOv2 ViT-g uses a SwiGLU MLP (w12/w3)
    qkv_bias: bool = True
    layerscale: bool = False  # DINOv2 blocks have ls1/ls2
    num_register_tokens: int = 0
    final_norm: bool = True
    pos_interp: str = "dino"  # one of POS_INTERP_RULES

    @property
    def arch_name(self) -> str:
        names = {v: k for k, v in ARCH_DIMS.items()}
        base = names.get(self.embed_dim, f"vit_d{self.embed_dim}")
        return f"{base}/{self.patch_size}"

    def describe(self) -> str:
        reg = f" + {self.num_register_tokens} registers" if self.num_register_tokens else ""
        return (f"{self.arch_name} (dim {self.embed_dim}, depth {self.depth}, {self.num_heads} heads, "
                f"patch {self.patch_size}{reg})")


@dataclass(frozen=True)
class MAEDecoderConfig(_Record):
    """The MAE decoder in the official models_mae.py key layout."""

    embed_dim: int = 512
    depth: int = 8
    num_heads: int = 16
    mlp_hidden: int = 2048
    norm_pix_loss: bool = False
