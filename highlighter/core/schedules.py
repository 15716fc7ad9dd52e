"""Per-iteration schedules of the DINO and MAE recipes (pure functions)."""

from __future__ import annotations

import math

import numpy as np


def cosine_schedule(base_value: float, final_value: float, epochs: int, niter_per_ep: int,
                    warmup_epochs: float = 0, start_warmup_value: float = 0.0) -> np.ndarray:
    """DINO's ``cosine_scheduler``: linear warmup, then a cosine from base to final; one value per iteration.
    (A fractional ``warmup_epochs`` is rounded to whole iterations.)"""
    warmup_iters = int(round(warmup_epochs * niter_per_ep))
    warmup = np.linspace(start_warmup_value, base_value, warmup_iters) if warmup_iters > 0 else np.array([])
    iters = np.arange(epochs * niter_per_ep - warmup_iters)
    schedule = final_value + 0.5 * (base_value - final_value) * (1 + np.cos(np.pi * iters / len(iters)))
    schedule = np.concatenate((warmup, schedule))
    assert len(schedule) == epochs * niter_per_ep
    return schedule


def teacher_temp_schedule(warmup_temp: float, temp: float, warmup_epochs: float, epochs: int,
                          niter_per_ep: int = 1) -> np.ndarray:
    """DINO's teacher temperature, one value per iteration: a linear warmup, then constant. Over whole epochs it is
    main_dino.py's, a value per epoch (np.linspace over the warmup epochs); a fractional warmup ramps per
    iteration instead (main_dino.py would round it away)."""
    if float(warmup_epochs).is_integer():
        w = int(warmup_epochs)
        per_epoch = np.concatenate((np.linspace(warmup_temp, temp, w), np.ones(epochs - w) * temp))
        return np.repeat(per_epoch, niter_per_ep)
    w = int(round(warmup_epochs * niter_per_ep))
    return np.concatenate((np.linspace(warmup_temp, temp, w), np.ones(epochs * niter_per_ep - w) * temp))


def mae_lr(epoch: float, lr: float, min_lr: float, warmup_epochs: float, epochs: int) -> float:
    """MAE's ``adjust_learning_rate``: linear warmup, then a half-cycle cosine; ``epoch`` is fractional."""
    if epoch < warmup_epochs:
        return lr * epoch / warmup_epochs
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup_epochs) / (epochs - warmup_epochs)))
