"""DINOv3 test files: the committed fixture written by the official builder (scripts/make_dinov3_fixture.py), timm's
conversion of an official state dict, and small official-layout files made here."""

from __future__ import annotations

from pathlib import Path

import torch

DATA = Path(__file__).resolve().parent / "data"
WEIGHTS, REFERENCE = DATA / "dinov3_tiny.pth", DATA / "dinov3_tiny_reference.npz"


def timm_layout(state: dict[str, torch.Tensor], dim: int, depth: int, heads: int, qkv_bias: bool = True):
    """The official state dict as timm converts it (timm's own checkpoint_filter_fn) into its DINOv3 model:
    (the timm model, its state dict)."""
    import timm
    from timm.models.eva import checkpoint_filter_fn

    need_timm_dinov3()
    name = "vit_small_patch16_dinov3_qkvb" if qkv_bias else "vit_small_patch16_dinov3"
    model = timm.create_model(name, pretrained=False, embed_dim=dim, depth=depth, num_heads=heads, num_classes=0)
    converted = checkpoint_filter_fn(dict(state), model)
    model.load_state_dict(converted, strict=True)
    return model.eval(), {k: v.contiguous() for k, v in model.state_dict().items()}


def need_timm_dinov3() -> None:
    """timm's DINOv3 models (timm 1.0.20 on), or skip / fail as tests/needs.py rules."""
    import timm

    if not timm.list_models("vit_small_patch16_dinov3*"):
        from needs import missing

        missing(f"timm {timm.__version__} has no DINOv3 models (they came in timm 1.0.20)")


def tiny_official_file(path: Path, seed: int = 0) -> Path:
    """A ViT-Ti/16 (depth 1) DINOv3 in the official layout, its periods in bfloat16 as in the released files."""
    from highlighter.config import ViTConfig
    from highlighter.core.backbone import build_vit
    from highlighter.core.save import dinov3_official_state

    cfg = ViTConfig(embed_dim=192, depth=1, num_heads=3, mlp_hidden=768, layerscale=True, num_register_tokens=4,
                    pos_interp="rope", norm_eps=1e-5)
    torch.manual_seed(seed)
    state = dinov3_official_state({k: v.detach().clone() for k, v in build_vit(cfg).state_dict().items()})
    state["rope_embed.periods"] = state["rope_embed.periods"].to(torch.bfloat16)
    torch.save(state, path)
    return path
