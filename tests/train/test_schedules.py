"""Schedules against their closed forms."""

import math

import numpy as np
import pytest

from highlighter.core.schedules import cosine_schedule, mae_lr, teacher_temp_schedule


def test_dino_cosine_schedule_closed_form():
    base, final, epochs, niter, warm = 0.002, 1e-6, 5, 7, 2
    s = cosine_schedule(base, final, epochs, niter, warm)
    assert len(s) == epochs * niter
    for it in range(len(s)):
        if it < warm * niter:
            want = base * it / (warm * niter - 1)  # np.linspace(0, base, warmup_iters)
        else:
            k, n = it - warm * niter, (epochs - warm) * niter
            want = final + 0.5 * (base - final) * (1 + math.cos(math.pi * k / n))
        assert math.isclose(s[it], want, rel_tol=1e-12, abs_tol=1e-15), it
    # weight decay rises 0.04 -> 0.4 and the teacher momentum 0.996 -> 1, without warmup
    wd = cosine_schedule(0.04, 0.4, 3, 4)
    assert math.isclose(wd[0], 0.04) and wd[-1] < 0.4 and np.all(np.diff(wd) > 0)
    m = cosine_schedule(0.996, 1.0, 3, 4)
    assert math.isclose(m[0], 0.996) and 0.9999 < m[-1] < 1


def test_teacher_temperature_warmup():
    t = teacher_temp_schedule(0.04, 0.07, 30, 100)
    assert len(t) == 100 and t[0] == 0.04 and math.isclose(t[29], 0.07) and np.all(t[30:] == 0.07)
    assert math.isclose(t[10], 0.04 + 0.03 * 10 / 29)


def test_mae_half_cycle_cosine():
    lr, min_lr, warm, epochs = 1e-3, 1e-5, 4, 20
    assert mae_lr(0.0, lr, min_lr, warm, epochs) == 0.0
    assert math.isclose(mae_lr(2.0, lr, min_lr, warm, epochs), lr / 2)
    assert math.isclose(mae_lr(4.0, lr, min_lr, warm, epochs), lr)
    assert math.isclose(mae_lr(12.0, lr, min_lr, warm, epochs), min_lr + (lr - min_lr) / 2)
    assert math.isclose(mae_lr(19.999, lr, min_lr, warm, epochs), min_lr, rel_tol=1e-3)


def test_schedule_lengths_in_epochs_or_percent_of_the_run():
    from highlighter.config import epochs_of, parse_span

    assert parse_span("3") == 3.0 and parse_span("0.5") == 0.5 and parse_span(" 10% ") == "10%"
    assert epochs_of("10%", 70) == pytest.approx(7.0) and epochs_of(2, 70) == 2.0 and epochs_of("0.25", 4) == 0.25
    for bad in ("ten", "-1", "150%", "%"):
        with pytest.raises(ValueError, match="epochs|percentage"):
            parse_span(bad)


def test_a_fractional_teacher_temperature_warmup_ramps_per_iteration():
    whole = teacher_temp_schedule(0.04, 0.07, 2, 4, niter_per_ep=3)  # main_dino.py's: one value per epoch
    assert whole.tolist() == pytest.approx([0.04] * 3 + [0.07] * 9)
    frac = teacher_temp_schedule(0.04, 0.07, 0.5, 4, niter_per_ep=4)  # 2 iterations of warmup
    assert frac.tolist() == pytest.approx([0.04, 0.07] + [0.07] * 14)
    assert len(teacher_temp_schedule(0.04, 0.07, 1.3, 5, niter_per_ep=7)) == 35


def test_a_percentage_of_the_run_sets_every_dino_schedule():
    from highlighter.config import DinoCfg
    from highlighter.train.dist import Dist
    from highlighter.train.steps import DinoTask

    cfg = DinoCfg(arch="vit_tiny", patch_size=16, global_crop_size=32, local_crop_size=16, local_crops_number=0,
                  out_dim=16, head_hidden_dim=16, head_bottleneck_dim=8, epochs=10, precision="fp32",
                  warmup_epochs="10%", freeze_last_layer="25%", warmup_teacher_temp=0.04, teacher_temp=0.07,
                  warmup_teacher_temp_epochs="5%")
    task = DinoTask(cfg, Dist(), niter_per_epoch=20)  # 200 steps
    assert task.lr[0] == 0 and task.lr[19] == pytest.approx(cfg.lr * 64 / 256) and task.lr[30] < task.lr[19]
    assert task.frozen_steps == 50
    temps = task.loss.teacher_temps
    assert temps[0] == 0.04 and temps[9] == pytest.approx(0.07) and 0.04 < temps[5] < 0.07 and len(temps) == 200
