"""Schedules against their closed forms."""

import math

import numpy as np

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
