"""Write random-weight models in the official on-disk layouts, as the official scripts save them."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors.torch import save_file

from reference import RefMAE, RefViT


def dino_backbone(path: Path, **kw) -> RefViT:
    """DINO's released backbone-only .pth: the bare state dict."""
    ref = RefViT(**kw).eval()
    torch.save(ref.state_dict(), path)
    return ref


def dino_full(path: Path, seed_teacher=0, seed_student=1, **kw) -> tuple[RefViT, RefViT]:
    """main_dino.py's checkpoint: DDP student ('module.backbone.'), bare teacher ('backbone.'), heads, args."""
    teacher, student = RefViT(seed=seed_teacher, **kw).eval(), RefViT(seed=seed_student, **kw).eval()
    dim = teacher.norm.weight.shape[0]
    head = {"mlp.0.weight": torch.randn(64, dim), "mlp.0.bias": torch.zeros(64),
            "last_layer.weight_g": torch.ones(256, 1), "last_layer.weight_v": torch.randn(256, 64)}
    save = {
        "student": {**{f"module.backbone.{k}": v for k, v in student.state_dict().items()},
                    **{f"module.head.{k}": v for k, v in head.items()}},
        "teacher": {**{f"backbone.{k}": v for k, v in teacher.state_dict().items()},
                    **{f"head.{k}": v for k, v in head.items()}},
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.0005, "params": [0, 1]}]},
        "epoch": 3,
        "args": argparse.Namespace(arch="vit_tiny", patch_size=kw.get("patch", 16), out_dim=65536,
                                   norm_last_layer=True, lr=0.0005, output_dir="/checkpoint/dino"),
        "dino_loss": {"center": torch.zeros(1, 256)},
    }
    torch.save(save, path)
    return teacher, student


def timm_safetensors(path: Path, ref: torch.nn.Module, num_classes: int = 10) -> None:
    """A timm state dict (with a classifier head) as .safetensors."""
    sd = {k: v.contiguous() for k, v in ref.state_dict().items()}
    dim = sd["norm.weight"].shape[0]
    sd.update({"head.weight": torch.randn(num_classes, dim), "head.bias": torch.zeros(num_classes)})
    save_file(sd, str(path))


def dinov2_official(path: Path, registers: int = 0, chunks: bool = False, **kw) -> RefViT:
    """DINOv2 hub files: layer scale, mask_token (1, D), optional register_tokens, block chunks."""
    if registers:
        kw.update(n_reg=registers, interpolate_offset=0.0, interpolate_antialias=True)
    ref = RefViT(layerscale=True, patch=14, **kw).eval()
    sd = dict(ref.state_dict())
    sd["mask_token"] = torch.zeros(1, sd["norm.weight"].shape[0])
    if chunks:  # block_chunks=4: blocks.<chunk>.<global index>.*
        depth = len(ref.blocks)
        per = depth // 4
        sd = {(f"blocks.{int(k.split('.')[1]) // per}.{k[len('blocks.'):]}" if k.startswith("blocks.") else k): v
              for k, v in sd.items()}
    torch.save(sd, path)
    return ref


def dinov2_reg_timm(path: Path, ref: RefViT) -> None:
    """timm's conversion of a DINOv2-with-registers file: reg_token, class position folded into cls_token."""
    sd = dict(ref.state_dict())
    out = {k: v for k, v in sd.items() if k not in ("register_tokens", "cls_token", "pos_embed")}
    out["reg_token"] = sd["register_tokens"]
    out["cls_token"] = sd["cls_token"] + sd["pos_embed"][:, :1]
    out["pos_embed"] = sd["pos_embed"][:, 1:]
    save_file({k: v.contiguous() for k, v in out.items()}, str(path))


def mae_official(path: Path, encoder_only=False, norm_pix_loss=False, with_args=True, **kw) -> RefMAE:
    """main_pretrain.py's checkpoint ({'model', 'optimizer', 'epoch', 'scaler', 'args'}), or the released
    encoder-only 'pretrain' file ({'model': encoder})."""
    ref = RefMAE(encoder_only=encoder_only, norm_pix_loss=norm_pix_loss, **kw).eval()
    save = {"model": ref.state_dict()}
    if with_args:
        save.update(optimizer={"state": {}, "param_groups": []}, epoch=799, scaler={"scale": 65536.0},
                    args=argparse.Namespace(model="mae_vit_base_patch16", norm_pix_loss=norm_pix_loss,
                                            mask_ratio=0.75, blr=1.5e-4))
    torch.save(save, path)
    return ref
