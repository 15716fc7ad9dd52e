"""Plain, frozen configuration records.

They are saved inside checkpoints as plain dicts (``asdict``), never as pickled objects, so every
checkpoint the project writes loads with ``torch.load(weights_only=True)``.
Imports nothing from highlighter.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

# How position embeddings are resized to another patch grid (see core/backbone.py); "rope": no learned
# embedding, DINOv3's rotary position encoding of the patch tokens' queries and keys at any grid.
POS_INTERP_RULES = ("dino", "dinov2", "dinov2_reg", "rope")

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

# What an architecture name means, in one place: the width, the depth (12 unless listed), the head count
# (KNOWN_HEADS), an MLP four times as wide, and the 224-pixel grid of the official releases.
ARCH_DIMS = {"vit_tiny": 192, "vit_small": 384, "vit_base": 768, "vit_large": 1024, "vit_huge": 1280,
             "vit_giant": 1536}
ARCH_DEPTHS = {"vit_large": 24, "vit_huge": 32, "vit_giant": 40}


def epochs_of(span: float | str, epochs: int) -> float:
    """A schedule's length in epochs: a number of epochs (fractions allowed) or ``"N%"`` of the planned run."""
    if isinstance(span, str):
        text = span.strip()
        return float(text[:-1]) / 100 * epochs if text.endswith("%") else float(text)
    return float(span)


def parse_span(text: str) -> float | str:
    """argparse type of a schedule length: ``3``, ``0.5`` (epochs) or ``10%`` (of the run, kept as text so that
    it follows the run's length when --epochs extends it)."""
    t = text.strip()
    try:
        value = float(t[:-1]) if t.endswith("%") else float(t)
    except ValueError:
        raise ValueError(f"{text!r} is neither a number of epochs nor a percentage of the run (e.g. 10%)") from None
    if value < 0 or (t.endswith("%") and value > 100):
        raise ValueError(f"{text!r}: use 0 or more epochs, or 0% to 100% of the run")
    return t if t.endswith("%") else value


def default_num_heads(dim: int, depth: int, table: dict[tuple[int, int], int] = KNOWN_HEADS) -> int:
    """Official head count when the architecture is a known one, else dim/64."""
    return table.get((dim, depth), max(1, dim // 64))


def parse_arch(spec: str) -> tuple[str, int | None]:
    """``vit_small``, ``vit_small/8`` or ``vit_small_patch8`` -> (name, patch or None); ValueError otherwise."""
    import re

    m = re.fullmatch(r"(vit_[a-z]+)(?:[/_](?:patch)?(\d+))?", spec.strip().lower())
    if not m or m.group(1) not in ARCH_DIMS:
        raise ValueError(f"unknown architecture {spec!r}; use one of {', '.join(ARCH_DIMS)} (optionally /PATCH)")
    return m.group(1), int(m.group(2)) if m.group(2) else None


def arch_config(name: str, patch_size: int = 16, image_size: int = 224, depth: int | None = None,
                num_heads: int | None = None, mlp_ratio: float = 4.0, num_registers: int = 0) -> ViTConfig:
    """The ViTConfig that ``name`` (``vit_tiny`` ... ``vit_giant``) stands for, optionally changed; the
    position-embedding grid covers ``image_size``."""
    dim = ARCH_DIMS[name]
    depth = depth or ARCH_DEPTHS.get(name, 12)
    return ViTConfig(embed_dim=dim, depth=depth, num_heads=num_heads or default_num_heads(dim, depth),
                     patch_size=patch_size, pos_grid=image_size // patch_size,
                     mlp_hidden=int(round(mlp_ratio * dim)), num_register_tokens=num_registers)


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
    norm_eps: float = 1e-6  # LayerNorm epsilon: 1e-6 in DINO, DINOv2 and MAE, 1e-5 in DINOv3

    @property
    def rope(self) -> bool:
        """DINOv3: rotary position encoding (periods ``rope_embed.periods``), no ``pos_embed``."""
        return self.pos_interp == "rope"

    @property
    def arch_name(self) -> str:
        names = {v: k for k, v in ARCH_DIMS.items()}
        base = names.get(self.embed_dim, f"vit_d{self.embed_dim}")
        return f"{base}/{self.patch_size}"

    def describe(self) -> str:
        reg = f" + {self.num_register_tokens} registers" if self.num_register_tokens else ""
        rope = ", RoPE" if self.rope else ""
        return (f"{self.arch_name} (dim {self.embed_dim}, depth {self.depth}, {self.num_heads} heads, "
                f"patch {self.patch_size}{reg}{rope})")


@dataclass(frozen=True)
class MAEDecoderConfig(_Record):
    """The MAE decoder in the official models_mae.py key layout."""

    embed_dim: int = 512
    depth: int = 8
    num_heads: int = 16
    mlp_hidden: int = 2048
    norm_pix_loss: bool = False


def _f(default, help: str, span: bool = False):
    from dataclasses import field

    return field(default=default, metadata={"help": help, "span": span})


_SPAN = "; epochs (fractions allowed) or N%% of the run, e.g. 10%%"


@dataclass(frozen=True)
class DinoCfg(_Record):
    """DINO pretraining; defaults are main_dino.py's (per process: batch_size_per_gpu)."""

    arch: str = _f("vit_small", "backbone: vit_tiny, vit_small or vit_base")
    patch_size: int = _f(16, "patch size (8 or 16)")
    depth: int = _f(12, "transformer blocks (12 in every official ViT)")
    num_heads: int = _f(0, "attention heads (0: the official count for --arch)")
    mlp_ratio: float = _f(4.0, "MLP hidden width / embedding dim (4 in every official ViT)")
    num_registers: int = _f(0, "register tokens (Darcet et al. 2024; DINOv2's layout), 0 for none")
    out_dim: int = _f(65536, "DINO head output dimension K")
    norm_last_layer: bool = _f(True, "fix the weight-norm scale of the head's last layer to 1")
    head_hidden_dim: int = _f(2048, "hidden width of the 3-layer head MLP")
    head_bottleneck_dim: int = _f(256, "bottleneck width before L2 normalisation")
    drop_path_rate: float = _f(0.1, "stochastic depth of the student")
    momentum_teacher: float = _f(0.996, "base EMA momentum of the teacher (cosine to 1)")
    warmup_teacher_temp: float = _f(0.04, "teacher temperature at the start of its warmup")
    teacher_temp: float = _f(0.04, "teacher temperature after the warmup")
    warmup_teacher_temp_epochs: float | str = _f(0, "linear teacher-temperature warmup" + _SPAN, span=True)
    student_temp: float = _f(0.1, "student temperature")
    center_momentum: float = _f(0.9, "EMA momentum of the centre")
    epochs: int = _f(100, "training epochs")
    batch_size: int = _f(64, "images per process per step")
    lr: float = _f(0.0005, "peak learning rate at a global batch of 256 (scaled linearly)")
    min_lr: float = _f(1e-6, "final learning rate of the cosine schedule")
    warmup_epochs: float | str = _f(10.0, "linear learning-rate warmup" + _SPAN, span=True)
    weight_decay: float = _f(0.04, "initial weight decay (cosine schedule)")
    weight_decay_end: float = _f(0.4, "final weight decay")
    clip_grad: float = _f(3.0, "per-parameter gradient-norm clipping (0 disables)")
    freeze_last_layer: float | str = _f(1, "how long the head's last layer stays frozen" + _SPAN, span=True)
    global_crop_size: int = _f(224, "global crop resolution")
    local_crop_size: int = _f(96, "local crop resolution")
    global_crops_scale: tuple = _f((0.4, 1.0), "area range of the 2 global crops")
    local_crops_number: int = _f(8, "number of local crops")
    local_crops_scale: tuple = _f((0.05, 0.4), "area range of the local crops")
    relative_blur: bool = _f(False, "scale DINO's blur radius U(0.1, 2) to the crop size (x size/224 for global, "
                                    "x size/96 for local crops); off: the paper's pixels")
    precision: str = _f("auto", "auto, fp32, bf16 or fp16 (fp16 only on CUDA, with a GradScaler)")
    seed: int = _f(0, "random seed")
    num_workers: int = _f(2, "data-loading worker processes")
    augment: str = _f("pil", "pil: the official PIL augmentations in worker processes; tensor: photos decoded once "
                             "onto the device and augmented there in batches (for a GPU the workers cannot feed)")


@dataclass(frozen=True)
class MaeCfg(_Record):
    """MAE pretraining; defaults are main_pretrain.py's (arch limited to ViT-Ti/S/B here)."""

    arch: str = _f("vit_base", "encoder: vit_tiny, vit_small or vit_base")
    patch_size: int = _f(16, "patch size")
    input_size: int = _f(224, "image size")
    mask_ratio: float = _f(0.75, "fraction of patches hidden")
    norm_pix_loss: bool = _f(False, "per-patch normalised pixel targets")
    decoder_embed_dim: int = _f(512, "decoder width")
    decoder_depth: int = _f(8, "decoder blocks")
    decoder_num_heads: int = _f(16, "decoder heads")
    epochs: int = _f(400, "training epochs")
    warmup_epochs: float | str = _f(40.0, "linear learning-rate warmup" + _SPAN, span=True)
    batch_size: int = _f(64, "images per process per step")
    accum_iter: int = _f(1, "gradient accumulation steps")
    blr: float = _f(1e-3, "base learning rate: lr = blr * effective batch / 256")
    min_lr: float = _f(0.0, "final learning rate of the half-cycle cosine")
    weight_decay: float = _f(0.05, "AdamW weight decay (none on biases and norms)")
    crop_scale: tuple = _f((0.2, 1.0), "RandomResizedCrop area range")
    precision: str = _f("auto", "auto, fp32, bf16 or fp16 (fp16 only on CUDA, with a GradScaler)")
    seed: int = _f(0, "random seed")
    num_workers: int = _f(2, "data-loading worker processes")


PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "dino": {
        # small crops and a small head, sized for a laptop CPU
        "cpu-small": dict(arch="vit_tiny", global_crop_size=112, local_crop_size=48, local_crops_number=6,
                          out_dim=4096, batch_size=32, epochs=30, warmup_epochs=3),
        "gpu": {},  # the paper recipe: main_dino.py's defaults
        # a laptop's budget, after the smallest published runs that reached object maps (siinwook's DINO on STL-10,
        # Gani et al. on Tiny ImageNet): ViT-Ti/8 at 64 px, 2 local crops not below 0.2 of the photo, a small K,
        # momentum 0.996, a fixed teacher temperature, the head free from the start, warmup a tenth of the run.
        # lr 0.002 at batch 64 is a peak of 5e-4: square-root scaling of 2e-3 at 1024 (the linear rule gives 1.25e-4).
        # 70 epochs of the 21,470 development photos are 1.5M images.
        "laptop": dict(arch="vit_tiny", patch_size=8, global_crop_size=64, local_crop_size=32, local_crops_number=2,
                       global_crops_scale=(0.4, 1.0), local_crops_scale=(0.2, 0.5), out_dim=1024,
                       momentum_teacher=0.996, warmup_teacher_temp=0.04, teacher_temp=0.04,
                       warmup_teacher_temp_epochs=0, lr=0.002, batch_size=64, epochs=70, warmup_epochs="10%",
                       freeze_last_layer=0),
        # the known fixes for small folders
        "small-data": dict(out_dim=8192, momentum_teacher=0.99, warmup_teacher_temp=0.04, teacher_temp=0.07,
                           warmup_teacher_temp_epochs=30, epochs=200, warmup_epochs=10),
    },
    "mae": {
        "cpu-small": dict(arch="vit_tiny", decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4,
                          batch_size=64, epochs=100, warmup_epochs=5, blr=1.5e-4),
        "gpu": dict(norm_pix_loss=True, blr=1.5e-4, epochs=800),  # the paper's recipe (Table 8 / PRETRAIN.md)
        "small-data": dict(arch="vit_tiny", decoder_embed_dim=256, decoder_depth=4, decoder_num_heads=8,
                           epochs=400, warmup_epochs=20, blr=1.5e-4),
    },
}
