"""One training step of each recipe, and its state. The loop around them is in loop.py, the wiring in pretrain.py.

DinoTask follows main_dino.py's train_one_epoch; MaeTask follows engine_pretrain.py's.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

from highlighter.config import ARCH_DIMS, DinoCfg, MaeCfg, MAEDecoderConfig, ViTConfig, default_num_heads, epochs_of
from highlighter.core.attention import AttentionViT
from highlighter.core.backbone import build_vit, set_fused_attention
from highlighter.core.device import cpu_supports_bf16
from highlighter.core.dino import (
    DINOHead,
    DINOLoss,
    DINOModel,
    cancel_last_layer_gradients,
    clip_gradients,
    collapse_stats,
    param_groups,
)
from highlighter.core.mae import MaskedAutoencoder, init_mae_weights
from highlighter.core.schedules import cosine_schedule, mae_lr, teacher_temp_schedule
from highlighter.core.transforms import normalise
from highlighter.errors import HighlighterError
from highlighter.train.dist import Dist


class NonFiniteLoss(HighlighterError):
    pass


def resolve_precision(precision: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """-> (autocast dtype or None for fp32, whether a GradScaler is needed)."""
    if precision == "auto":
        if device.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "bf16" if cpu_supports_bf16() else "fp32"
    if precision == "fp32":
        return None, False
    if precision == "bf16":
        return torch.bfloat16, False
    if precision == "fp16":
        if device.type != "cuda":
            raise HighlighterError("fp16 training needs CUDA; use --precision bf16 or fp32 on the CPU")
        return torch.float16, True
    raise HighlighterError(f"unknown precision {precision!r}; use auto, fp32, bf16 or fp16")


def vit_config(arch: str, patch_size: int, image_size: int, depth: int = 12, num_heads: int = 0,
               mlp_ratio: float = 4.0, num_registers: int = 0) -> ViTConfig:
    """The backbone of a training run: an official width (--arch), optionally shallower, narrower in the MLP,
    with other head counts or with registers."""
    if arch not in ("vit_tiny", "vit_small", "vit_base"):
        raise HighlighterError(f"--arch {arch}: training supports vit_tiny, vit_small and vit_base")
    dim = ARCH_DIMS[arch]
    if image_size % patch_size:
        raise HighlighterError(f"image size {image_size} is not a multiple of the patch size {patch_size}")
    heads = num_heads or default_num_heads(dim, 12)
    if depth < 1 or dim % heads or mlp_ratio <= 0 or num_registers < 0:
        raise HighlighterError(f"invalid backbone: depth {depth}, {heads} heads for dim {dim}, mlp ratio "
                               f"{mlp_ratio}, {num_registers} registers")
    return ViTConfig(embed_dim=dim, depth=depth, num_heads=heads, patch_size=patch_size,
                     pos_grid=image_size // patch_size, mlp_hidden=int(round(mlp_ratio * dim)),
                     num_register_tokens=num_registers)


class _Task:
    kind = ""
    vit_cfg: ViTConfig
    decoder_cfg: MAEDecoderConfig | None = None

    def __init__(self, dist: Dist, precision: str):
        self.dist, self.device = dist, dist.device
        self.amp_dtype, use_scaler = resolve_precision(precision, self.device)
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    @property
    def precision_name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]

    def _wrap(self, model: nn.Module) -> nn.Module:
        model.to(self.device)
        set_fused_attention(model, self.device.type == "cuda")
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            return DDP(model, device_ids=ids)
        return model

    def _backward_step(self, loss: torch.Tensor, optimizer, before_step=None) -> None:
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(optimizer)
            if before_step:
                before_step()
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            loss.backward()
            if before_step:
                before_step()
            optimizer.step()


class DinoTask(_Task):
    kind = "dino"

    def __init__(self, cfg: DinoCfg, dist: Dist, niter_per_epoch: int, vit_cfg: ViTConfig | None = None,
                 init_state: dict[str, torch.Tensor] | None = None):
        """``vit_cfg`` overrides the backbone that ``cfg`` describes (a resumed or ``--init`` run keeps its
        file's architecture); ``init_state`` starts student and teacher backbones from those weights."""
        super().__init__(dist, cfg.precision)
        self.cfg = cfg
        self.vit_cfg = vit_cfg or vit_config(cfg.arch, cfg.patch_size, cfg.global_crop_size, cfg.depth,
                                             cfg.num_heads, cfg.mlp_ratio, cfg.num_registers)
        self.ncrops = 2 + cfg.local_crops_number
        dim = self.vit_cfg.embed_dim

        def make(drop_path: float, norm_last_layer: bool) -> DINOModel:
            vit = build_vit(self.vit_cfg, drop_path_rate=drop_path)
            nn.init.trunc_normal_(vit.cls_token, std=0.02)  # DINO initialises the class token like pos_embed
            if self.vit_cfg.num_register_tokens:  # distinct values, or the registers stay identical forever
                nn.init.trunc_normal_(vit.register_tokens, std=0.02)
            head = DINOHead(dim, cfg.out_dim, cfg.head_hidden_dim, cfg.head_bottleneck_dim, norm_last_layer)
            return DINOModel(vit, self.vit_cfg, head)

        torch.manual_seed(cfg.seed)
        student = make(cfg.drop_path_rate, cfg.norm_last_layer)
        if init_state is not None:
            load_backbone(student.backbone, init_state)
        self.teacher = make(0.0, True).to(self.device)
        set_fused_attention(self.teacher, self.device.type == "cuda")
        self.teacher.load_state_dict(student.state_dict())
        for p in self.teacher.parameters():
            p.requires_grad = False
        self.student = self._wrap(student)
        self.student_plain = student
        self.loss = DINOLoss(cfg.out_dim, self.ncrops,
                             teacher_temp_schedule(cfg.warmup_teacher_temp, cfg.teacher_temp,
                                                   epochs_of(cfg.warmup_teacher_temp_epochs, cfg.epochs), cfg.epochs,
                                                   niter_per_epoch),
                             cfg.student_temp, cfg.center_momentum,
                             all_reduce=dist.all_reduce_sum if dist.enabled else None).to(self.device)
        self.optimizer = torch.optim.AdamW(param_groups(student))
        global_batch = cfg.batch_size * dist.world
        self.lr = cosine_schedule(cfg.lr * global_batch / 256.0, cfg.min_lr, cfg.epochs, niter_per_epoch,
                                  epochs_of(cfg.warmup_epochs, cfg.epochs))
        self.frozen_steps = int(round(epochs_of(cfg.freeze_last_layer, cfg.epochs) * niter_per_epoch))
        self.wd = cosine_schedule(cfg.weight_decay, cfg.weight_decay_end, cfg.epochs, niter_per_epoch)
        self.momentum = cosine_schedule(cfg.momentum_teacher, 1.0, cfg.epochs, niter_per_epoch)
        self._pairs = (list(student.parameters()), list(self.teacher.parameters()))

    def images_per_step(self) -> int:
        return self.cfg.batch_size

    def step(self, data, it: int, epoch: int, in_epoch: int, monitor: bool = False) -> dict:
        for i, group in enumerate(self.optimizer.param_groups):
            group["lr"] = float(self.lr[it])  # plain floats: checkpoints must load with weights_only=True
            if i == 0:  # only the regularised group
                group["weight_decay"] = float(self.wd[it])
        crops = [normalise(c.to(self.device, non_blocking=True)) for c in data]
        with self.autocast():
            teacher_out = self.teacher(crops[:2])  # only the 2 global crops pass through the teacher
            student_out = self.student(crops)
            loss = self.loss(student_out, teacher_out, it)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise NonFiniteLoss(f"the loss is {loss_value} at epoch {epoch}, step {it}")
        self.optimizer.zero_grad(set_to_none=True)

        def before_step():
            if self.cfg.clip_grad:
                clip_gradients(self.student_plain, self.cfg.clip_grad)
            cancel_last_layer_gradients(self.student_plain, it, self.frozen_steps)

        self._backward_step(loss, self.optimizer, before_step)
        with torch.no_grad():  # EMA of the teacher, exactly k = m k + (1 - m) q
            m = float(self.momentum[it])
            torch._foreach_mul_(self._pairs[1], m)
            torch._foreach_add_(self._pairs[1], torch._foreach_mul([p.detach() for p in self._pairs[0]], 1 - m))
        metrics = {"loss": loss_value, "lr": float(self.lr[it]), "wd": float(self.wd[it]), "momentum": m,
                   "teacher_temp": self.loss.teacher_temps[it]}
        if monitor:
            metrics.update(collapse_stats(teacher_out, self.loss.center, self.loss.teacher_temps[it]))
        return metrics

    def state_dict(self) -> dict:
        d = {"student": self.student_plain.state_dict(), "teacher": self.teacher.state_dict(),
             "optimizer": self.optimizer.state_dict(), "dino_loss": self.loss.state_dict()}
        if self.scaler is not None:
            d["scaler"] = self.scaler.state_dict()
        return d

    def load_state_dict(self, d: dict) -> None:
        self.student_plain.load_state_dict(d["student"])
        self.teacher.load_state_dict(d["teacher"])
        self.optimizer.load_state_dict(d["optimizer"])
        self.loss.load_state_dict(d["dino_loss"])
        if self.scaler is not None and "scaler" in d:
            self.scaler.load_state_dict(d["scaler"])

    def attention_model(self) -> AttentionViT:
        """The teacher's backbone, for previews (the teacher is the model DINO evaluates)."""
        return AttentionViT(self.teacher.backbone, self.vit_cfg).eval()

    def backbone_state(self) -> dict[str, torch.Tensor]:
        return self.teacher.backbone.state_dict()


def load_backbone(vit: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy a checkpoint's encoder weights into a freshly built backbone; every backbone key must be there."""
    own = vit.state_dict()
    missing = sorted(k for k in own if k not in state)
    if missing:
        raise HighlighterError(f"--init: the checkpoint lacks {len(missing)} backbone weights, e.g. {missing[0]}")
    bad = [k for k in own if tuple(state[k].shape) != tuple(own[k].shape)]
    if bad:
        raise HighlighterError(f"--init: {bad[0]} has shape {tuple(state[bad[0]].shape)}, the backbone needs "
                               f"{tuple(own[bad[0]].shape)}")
    vit.load_state_dict({k: state[k].to(own[k].dtype) for k in own})


def mae_param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """timm's add_weight_decay as main_pretrain.py uses it: no decay on biases and 1-D parameters."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim == 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


class MaeTask(_Task):
    kind = "mae"

    def __init__(self, cfg: MaeCfg, dist: Dist, niter_per_epoch: int, vit_cfg: ViTConfig | None = None,
                 init_state: dict[str, torch.Tensor] | None = None):
        super().__init__(dist, cfg.precision)
        self.cfg, self.niter = cfg, niter_per_epoch
        self.vit_cfg = vit_cfg or vit_config(cfg.arch, cfg.patch_size, cfg.input_size)
        if self.vit_cfg.layerscale or self.vit_cfg.num_register_tokens or self.vit_cfg.swiglu:
            raise HighlighterError("MAE training needs a plain ViT encoder (no layerscale, registers or SwiGLU)")
        if cfg.decoder_embed_dim % cfg.decoder_num_heads:
            raise HighlighterError(f"--decoder-num-heads {cfg.decoder_num_heads} does not divide "
                                   f"--decoder-embed-dim {cfg.decoder_embed_dim}")
        self.decoder_cfg = MAEDecoderConfig(embed_dim=cfg.decoder_embed_dim, depth=cfg.decoder_depth,
                                            num_heads=cfg.decoder_num_heads, mlp_hidden=4 * cfg.decoder_embed_dim,
                                            norm_pix_loss=cfg.norm_pix_loss)
        torch.manual_seed(cfg.seed)
        model = MaskedAutoencoder(self.vit_cfg, self.decoder_cfg)
        init_mae_weights(model)
        if init_state is not None:
            encoder = [k for k in model.state_dict() if not (k.startswith("decoder") or k == "mask_token")]
            missing = sorted(k for k in encoder if k not in init_state)
            if missing:
                raise HighlighterError(f"--init: the checkpoint lacks {len(missing)} encoder weights, "
                                       f"e.g. {missing[0]}")
            model.load_state_dict({**model.state_dict(), **{k: init_state[k].float() for k in encoder}})
        self.model_plain = model
        self.model = self._wrap(model)
        eff_batch = cfg.batch_size * cfg.accum_iter * dist.world
        self.base_lr = cfg.blr * eff_batch / 256.0
        self.optimizer = torch.optim.AdamW(mae_param_groups(model, cfg.weight_decay), lr=self.base_lr,
                                           betas=(0.9, 0.95))
        self.optimizer.zero_grad(set_to_none=True)
        self.current_lr = 0.0

    @property
    def num_patches(self) -> int:
        return self.model_plain.num_patches

    def images_per_step(self) -> int:
        return self.cfg.batch_size

    def step(self, data, it: int, epoch: int, in_epoch: int, monitor: bool = False) -> dict:
        cfg = self.cfg
        if in_epoch % cfg.accum_iter == 0:
            self.current_lr = float(mae_lr(in_epoch / self.niter + epoch, self.base_lr, cfg.min_lr,
                                           epochs_of(cfg.warmup_epochs, cfg.epochs), cfg.epochs))
            for group in self.optimizer.param_groups:
                group["lr"] = self.current_lr
        imgs, noise = (t.to(self.device, non_blocking=True) for t in data)
        imgs = normalise(imgs)
        update = (in_epoch + 1) % cfg.accum_iter == 0
        sync = contextlib.nullcontext() if update or not self.dist.enabled else self.model.no_sync()
        with sync:
            with self.autocast():
                loss, _, _ = self.model(imgs, mask_ratio=cfg.mask_ratio, noise=noise)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise NonFiniteLoss(f"the loss is {loss_value} at epoch {epoch}, step {it}")
            loss = loss / cfg.accum_iter
            if update:
                self._backward_step(loss, self.optimizer)
                self.optimizer.zero_grad(set_to_none=True)
            elif self.scaler is not None:
                self.scaler.scale(loss).backward()
            else:
                loss.backward()
        return {"loss": loss_value, "lr": self.current_lr, "wd": cfg.weight_decay}

    def state_dict(self) -> dict:
        d = {"model": self.model_plain.state_dict(), "optimizer": self.optimizer.state_dict()}
        if self.scaler is not None:
            d["scaler"] = self.scaler.state_dict()
        return d

    def load_state_dict(self, d: dict) -> None:
        self.model_plain.load_state_dict(d["model"])
        self.optimizer.load_state_dict(d["optimizer"])
        if self.scaler is not None and "scaler" in d:
            self.scaler.load_state_dict(d["scaler"])

    def backbone_state(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.model_plain.state_dict().items()
                if not (k.startswith("decoder") or k == "mask_token")}


def expected_mae_flop_ratio(cfg: MaeCfg) -> float:
    """Theoretical speed-up of mask ratio r over 0: encoder+decoder FLOPs at full length / at (1-r) L visible."""
    vit = vit_config(cfg.arch, cfg.patch_size, cfg.input_size)
    L = vit.pos_grid**2
    D, dd = vit.embed_dim, cfg.decoder_embed_dim

    def blocks(n, dim, depth):  # per block: 12 n dim^2 (qkv, proj, mlp) + 2 n^2 dim (attention)
        return depth * (24 * n * dim * dim + 4 * n * n * dim)

    full = blocks(L + 1, D, vit.depth) + blocks(L + 1, dd, cfg.decoder_depth)
    keep = int(L * (1 - cfg.mask_ratio))
    masked = blocks(keep + 1, D, vit.depth) + blocks(L + 1, dd, cfg.decoder_depth)
    return float(np.float64(full) / masked)
