"""DINO (Caron et al. 2021): the projection head, the loss with centering and sharpening, and helpers.

Key layout as the official main_dino.py: ``backbone.*`` (the ViT) and ``head.{mlp.0,mlp.2,mlp.4,
last_layer.weight_g,last_layer.weight_v}``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from highlighter.config import ViTConfig
from highlighter.core.attention import forward_cls


class WeightNormLinear(nn.Module):
    """``nn.utils.weight_norm(nn.Linear(i, o, bias=False))`` with the same parameter names (weight_g, weight_v).

    ``weight_v`` keeps ``nn.Linear``'s own initialisation, U(-1/sqrt(i), 1/sqrt(i)): the official DINOHead
    creates its last layer after ``apply(_init_weights)``, so the truncated normal (0.02) never reaches it.
    The row length matters although the layer divides it out: the gradient on ``weight_v`` scales with
    1/|row|, so rows 1.8x shorter (trunc_normal 0.02 at i = 256) turn 1.8x faster per update."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.weight_v = nn.Parameter(torch.empty(out_dim, in_dim))
        nn.init.kaiming_uniform_(self.weight_v, a=math.sqrt(5))  # nn.Linear.reset_parameters
        self.weight_g = nn.Parameter(self.weight_v.detach().norm(dim=1, keepdim=True).clone())  # (out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight_v * (self.weight_g / self.weight_v.norm(dim=1, keepdim=True))
        return F.linear(x, w)


class DINOHead(nn.Module):
    """3-layer MLP (GELU) -> L2 normalisation -> weight-normalised linear layer to K dimensions."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 norm_last_layer: bool = True):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, hidden_dim),
                                 nn.GELU(), nn.Linear(hidden_dim, bottleneck_dim))
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = WeightNormLinear(bottleneck_dim, out_dim)
        with torch.no_grad():
            self.last_layer.weight_g.fill_(1)
        if norm_last_layer:
            self.last_layer.weight_g.requires_grad = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1, p=2)
        return self.last_layer(x)


class DINOModel(nn.Module):
    """main_dino.py's MultiCropWrapper: each run of same-resolution crops goes through the backbone as
    one batch; the class tokens of all crops go through the head. Output: (n_crops * B, K)."""

    def __init__(self, backbone: nn.Module, cfg: ViTConfig, head: DINOHead):
        super().__init__()
        self.backbone, self.head, self.cfg = backbone, head, cfg

    def forward(self, crops: list[torch.Tensor]) -> torch.Tensor:
        sizes = torch.tensor([c.shape[-1] for c in crops])
        ends = torch.cumsum(torch.unique_consecutive(sizes, return_counts=True)[1], 0).tolist()
        start, outs = 0, []
        for end in ends:
            outs.append(forward_cls(self.backbone, self.cfg, torch.cat(crops[start:end])))
            start = end
        return self.head(torch.cat(outs))


class DINOLoss(nn.Module):
    """Cross-entropy between the sharpened, centred teacher on the 2 global crops and the student on
    every crop, over all pairs except a crop with itself. The centre is an EMA of the teacher's output,
    summed over every process (``all_reduce``) before it is averaged."""

    def __init__(self, out_dim: int, ncrops: int, teacher_temps, student_temp: float = 0.1,
                 center_momentum: float = 0.9, all_reduce: Callable[[torch.Tensor], None] | None = None):
        super().__init__()
        self.ncrops, self.student_temp, self.center_momentum = ncrops, student_temp, center_momentum
        self.teacher_temps = [float(t) for t in teacher_temps]
        self.all_reduce = all_reduce
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(self, student_output: torch.Tensor, teacher_output: torch.Tensor, step: int):
        """``step`` indexes ``teacher_temps`` (one value per iteration, see schedules.teacher_temp_schedule)."""
        student_out = (student_output / self.student_temp).chunk(self.ncrops)
        temp = self.teacher_temps[step]
        teacher_out = F.softmax((teacher_output - self.center) / temp, dim=-1).detach().chunk(2)
        total, n_terms = 0.0, 0
        for iq, q in enumerate(teacher_out):
            for v in range(len(student_out)):
                if v == iq:
                    continue
                total = total + torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1).mean()
                n_terms += 1
        self.update_center(teacher_output)
        return total / n_terms

    @torch.no_grad()
    def update_center(self, teacher_output: torch.Tensor) -> None:
        batch_center = torch.sum(teacher_output, dim=0, keepdim=True)
        world = 1
        if self.all_reduce is not None:
            world = self.all_reduce(batch_center) or 1
        batch_center = batch_center / (len(teacher_output) * world)
        self.center.mul_(self.center_momentum).add_(batch_center * (1 - self.center_momentum))


@torch.no_grad()
def collapse_stats(teacher_output: torch.Tensor, center: torch.Tensor, temp: float) -> dict[str, float]:
    """Collapse monitor: mean entropy of the teacher's distribution, its KL to uniform, the centre's norm.

    Entropy near log K (KL near 0) means uniform collapse; entropy near 0 means one-dimension collapse.
    """
    p = F.softmax((teacher_output.float() - center) / temp, dim=-1)
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum(-1).mean().item()
    return {"teacher_entropy": entropy, "teacher_kl_uniform": math.log(p.shape[-1]) - entropy,
            "center_norm": center.norm().item()}


@torch.no_grad()
def clip_gradients(model: nn.Module, clip: float) -> None:
    """DINO's per-parameter clipping: each gradient whose norm exceeds ``clip`` is scaled by clip / (norm + 1e-6)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if grads:
        for g, n in zip(grads, torch._foreach_norm(grads, 2)):
            g.mul_(torch.clamp(clip / (n + 1e-6), max=1.0))


def cancel_last_layer_gradients(model: DINOModel, step: int, frozen_steps: int) -> None:
    """main_dino.py's cancel_gradients_last_layer, counted in iterations (epoch < F <=> step < F x steps per
    epoch, so whole epochs are the official rule): the last layer gets no gradient, hence no update at all."""
    if step >= frozen_steps:
        return
    for name, p in model.named_parameters():
        if "last_layer" in name:
            p.grad = None


def param_groups(model: nn.Module) -> list[dict]:
    """DINO's get_params_groups: no weight decay on biases and 1-D parameters (norms); the regularised
    group comes first, as the weight-decay schedule is applied to group 0 only."""
    regularized, not_regularized = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (not_regularized if name.endswith(".bias") or p.ndim == 1 else regularized).append(p)
    return [{"params": regularized}, {"params": not_regularized, "weight_decay": 0.0}]
