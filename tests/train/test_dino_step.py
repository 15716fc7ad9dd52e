"""One DINO training step equals main_dino.py's, step after step, on the same weights and crops.

The reference (tests/reference.py: RefDINOTrainer, RefMultiCrop, RefDINOHead over RefViT) restates the official
train_one_epoch, DINOLoss, DINOHead, MultiCropWrapper and utils' schedules, clipping and last-layer freezing with
plain torch: its own explicit-softmax ViT, torch's own weight_norm, a loop per parameter. Both run in float64, so
that what is compared is the computation and not the rounding: in float32 the explicit attention and the fused
one differ by ~1e-7, which AdamW (its update is m / sqrt(v)) turns into differences of the order of the learning
rate on parameters whose gradient is near zero. In float64 they agree to ~1e-12.
Stochastic depth is 0 here: the official student's drop path draws from the RNG in its own order.
"""

import numpy as np
import pytest
import torch

from highlighter.config import DinoCfg
from highlighter.train import steps
from highlighter.train.dist import Dist
from highlighter.train.steps import DinoTask

from reference import RefDINOHead, RefDINOTrainer, RefMultiCrop, RefViT

MEAN, STD = torch.tensor((0.485, 0.456, 0.406)), torch.tensor((0.229, 0.224, 0.225))
NITER, EPOCHS, B = 2, 3, 4
CFG = DinoCfg(arch="vit_tiny", patch_size=8, global_crop_size=32, local_crop_size=16, local_crops_number=2,
              out_dim=64, head_hidden_dim=48, head_bottleneck_dim=32, batch_size=B, epochs=EPOCHS,
              lr=8e-4 * 256 / B,  # a peak of 8e-4 after the linear scaling rule
              min_lr=1e-5, warmup_epochs=1, weight_decay=0.04, weight_decay_end=0.4, momentum_teacher=0.99,
              warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_epochs=2, freeze_last_layer=1,
              clip_grad=0.3,  # low enough that clipping acts on most parameters
              drop_path_rate=0.0, precision="fp32", seed=3)


def _crops(step: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(100 + step)
    sizes = [32, 32, 16, 16]
    return [torch.randint(0, 256, (B, 3, s, s), generator=g, dtype=torch.uint8) for s in sizes]


def _ref_normalise(c: torch.Tensor) -> torch.Tensor:
    """ToTensor + Normalize in float32, as the official transforms (and our loader) compute them, then float64."""
    return ((c.float() / 255 - MEAN[:, None, None]) / STD[:, None, None]).double()


@pytest.fixture(scope="module")
def both():
    torch.set_num_threads(2)
    monkey = pytest.MonkeyPatch()
    normalise = steps.normalise
    monkey.setattr(steps, "normalise", lambda c: normalise(c).double())  # the task's crops in float64
    task = DinoTask(CFG, Dist(), niter_per_epoch=NITER)
    for m in (task.student_plain, task.teacher, task.loss):
        m.double()

    def ref_model():
        vit = RefViT(dim=192, depth=12, heads=3, patch=8, grid=4)
        return RefMultiCrop(vit, RefDINOHead(192, CFG.out_dim, CFG.head_hidden_dim, CFG.head_bottleneck_dim)).double()

    student, teacher = ref_model(), ref_model()
    student.load_state_dict(task.student_plain.state_dict(), strict=True)
    teacher.load_state_dict(student.state_dict(), strict=True)
    for p in teacher.parameters():
        p.requires_grad = False
    ref = RefDINOTrainer(student, teacher, out_dim=CFG.out_dim, ncrops=4, epochs=EPOCHS, niter=NITER, lr=CFG.lr,
                         batch=B, min_lr=CFG.min_lr, warmup_epochs=1, wd=CFG.weight_decay, wd_end=CFG.weight_decay_end,
                         momentum=CFG.momentum_teacher, warmup_teacher_temp=CFG.warmup_teacher_temp,
                         teacher_temp=CFG.teacher_temp, warmup_teacher_temp_epochs=2, clip_grad=CFG.clip_grad,
                         freeze_last_layer=1)
    ours, theirs, metrics = [], [], []
    w0 = task.student_plain.state_dict()["head.last_layer.weight_v"].clone()
    for it in range(NITER * EPOCHS):
        crops = _crops(it)
        m = task.step(crops, it, it // NITER, it % NITER)
        metrics.append(m)
        ours.append(m["loss"])
        theirs.append(ref.step([_ref_normalise(c) for c in crops], it))
        if it == NITER - 1:  # the last step of the frozen epoch
            frozen_after = task.student_plain.state_dict()["head.last_layer.weight_v"].clone()
    yield dict(task=task, ref=ref, ours=ours, theirs=theirs, metrics=metrics, w0=w0, frozen_after=frozen_after)
    monkey.undo()


def test_losses_agree_at_every_step(both):
    np.testing.assert_allclose(both["ours"], both["theirs"], rtol=1e-10, atol=0)
    assert len(set(np.round(both["ours"], 6))) == len(both["ours"])  # the crops and weights change every step


def test_parameters_of_student_and_teacher_and_the_centre_agree_after_six_steps(both):
    task, ref = both["task"], both["ref"]
    for ours, theirs, who in ((task.student_plain, ref.student, "student"), (task.teacher, ref.teacher, "teacher")):
        theirs_sd = theirs.state_dict()
        for name, p in ours.state_dict().items():
            torch.testing.assert_close(p, theirs_sd[name], rtol=0, atol=1e-10, msg=f"{who} {name}")
    torch.testing.assert_close(task.loss.center, ref.center, rtol=0, atol=1e-12)
    # the run moved: the comparison is not of two untouched models
    moved = (task.student_plain.state_dict()["backbone.blocks.11.mlp.fc2.weight"]
             - task.teacher.state_dict()["backbone.blocks.11.mlp.fc2.weight"]).abs().max()
    assert moved > 1e-4


def test_schedules_and_the_frozen_last_layer(both):
    ref, metrics = both["ref"], both["metrics"]
    for it, m in enumerate(metrics):
        assert m["lr"] == pytest.approx(ref.lr[it], rel=1e-12)
        assert m["wd"] == pytest.approx(ref.wd[it], rel=1e-12)
        assert m["momentum"] == pytest.approx(ref.momentum[it], rel=1e-12)
        assert m["teacher_temp"] == pytest.approx(ref.temps[it // NITER], rel=1e-12)
    assert metrics[0]["lr"] == 0.0 and metrics[NITER]["lr"] == pytest.approx(8e-4)  # warmup ends at its peak
    # frozen for the first epoch (no gradient: not even weight decay touches it), free after
    torch.testing.assert_close(both["frozen_after"], both["w0"], rtol=0, atol=0)
    last = both["task"].student_plain.state_dict()["head.last_layer.weight_v"]
    assert (last - both["frozen_after"]).abs().max() > 1e-5
