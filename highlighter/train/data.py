"""Training images: discovery, per-sample seeded decoding and augmentation, a resumable sharded sampler."""

from __future__ import annotations

import os
import random
import signal
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from highlighter.errors import ImageError
from highlighter.train.packed import load_source


@dataclass
class Unreadable:
    message: str


class TrainImages(Dataset):
    """Indexed by (epoch, i): the sample's randomness comes from Random(f"{seed}-{epoch}-{i}"), so it is the
    same in any worker, after a resume, and on any rank. An unreadable file yields ``Unreadable``."""

    def __init__(self, files: list[Path], transform, seed: int = 0):
        self.files, self.transform, self.seed = files, transform, seed

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: tuple[int, int]):
        epoch, i = key
        try:
            img = load_source(self.files[i])
        except ImageError as e:
            return Unreadable(str(e))
        return self.transform(img, random.Random(f"{self.seed}-{epoch}-{i}"))


def collate(batch: list) -> dict:
    """Stack the readable samples; report the unreadable ones. DINO samples are lists of crops (-> a list
    of (B, 3, s, s) tensors); MAE samples are (image, noise) pairs (-> two tensors)."""
    errors = [b.message for b in batch if isinstance(b, Unreadable)]
    good = [b for b in batch if not isinstance(b, Unreadable)]
    if not good:
        return {"data": None, "n": 0, "errors": errors}
    if isinstance(good[0], list):
        data = [torch.stack([g[c] for g in good]) for c in range(len(good[0]))]
    else:
        data = tuple(torch.stack([g[k] for g in good]) for k in range(len(good[0])))
    return {"data": data, "n": len(good), "errors": errors}


class EpochBatches:
    """Batch sampler: a seeded permutation per epoch, cut into global batches (drop_last); rank r takes
    the r-th contiguous slice of each. ``set_epoch(e, start)`` resumes at batch ``start``."""

    def __init__(self, n: int, batch_size: int, seed: int = 0, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.steps_per_epoch = n // (batch_size * world)
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.steps_per_epoch - self.start

    def __iter__(self):
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()
        gb = self.batch_size * self.world
        for b in range(self.start, self.steps_per_epoch):
            chunk = perm[b * gb:(b + 1) * gb][self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
            yield [(self.epoch, i) for i in chunk]


def _worker_init(_):
    torch.set_num_threads(1)
    # Ctrl-C in a terminal (or a kill of the process group) reaches the workers too. They ignore it: the
    # main process saves a checkpoint and then shuts them down. A worker dying first would make the
    # DataLoader raise in the middle of that save.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Decoding must not take cores from the model: a worker that preempts one of the compute threads stalls
    # every parallel region. SCHED_IDLE lets workers use only the CPU time the model leaves idle.
    policy = os.environ.get("HIGHLIGHTER_WORKER_SCHED", "idle")
    try:
        if policy == "idle" and hasattr(os, "SCHED_IDLE"):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        elif policy == "nice":  # "normal" leaves the scheduler alone
            os.nice(5)
    except OSError:
        pass


def make_loader(dataset: TrainImages, batches: EpochBatches, num_workers: int, pin_memory: bool = False):
    return DataLoader(dataset, batch_sampler=batches, num_workers=num_workers, collate_fn=collate,
                      pin_memory=pin_memory, persistent_workers=num_workers > 0, worker_init_fn=_worker_init,
                      prefetch_factor=4 if num_workers > 0 else None,
                      generator=torch.Generator().manual_seed(batches.seed))
