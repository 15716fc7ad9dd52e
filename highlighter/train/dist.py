"""torch.distributed in one small module. One process on CPU or one GPU is the default path; under
torchrun (RANK/WORLD_SIZE set) it uses NCCL on GPUs and gloo on CPUs."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist

log = logging.getLogger(__name__)


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    launched: bool = False  # started by torchrun: a process group exists even for one process

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1 or self.launched

    @property
    def backend(self) -> str | None:
        """'nccl' or 'gloo' under torchrun, else None."""
        return tdist.get_backend() if self.enabled and tdist.is_initialized() else None

    def all_reduce_sum(self, t: torch.Tensor) -> int:
        """Sum ``t`` in place over all processes; returns the world size."""
        if self.enabled:
            tdist.all_reduce(t)
        return self.world

    def barrier(self) -> None:
        if self.enabled:
            tdist.barrier()


def init_distributed(device: str = "auto") -> Dist:
    from highlighter.core.device import resolve_device

    resolve_device(device)  # a device this machine lacks: one line (DeviceError), as in every command
    want_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    # torchrun sets RANK and MASTER_ADDR: then the process group and DDP are set up even for one process, so that
    # `torchrun --nproc_per_node=1` runs (and tests) the path of several
    launched = "RANK" in os.environ and "MASTER_ADDR" in os.environ
    if world <= 1 and not launched:
        dev = torch.device(device if device.startswith("cuda") else "cuda") if want_cuda else torch.device("cpu")
        return Dist(device=dev)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if want_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    tdist.init_process_group(backend="nccl" if want_cuda else "gloo")
    return Dist(rank=rank, world=world, local_rank=local_rank, device=dev, launched=launched)


def shutdown(d: Dist) -> None:
    if d.enabled and tdist.is_initialized():
        tdist.destroy_process_group()
