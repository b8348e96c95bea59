"""``trainer.distributed=ddp``: one training on several processes (GPUs, or CPU processes with gloo) with PyTorch's
DistributedDataParallel.

Two ways in, one training:
* ``torchrun --nproc-per-node=N -m compiler task=train ... trainer.distributed=ddp``: torchrun starts N copies of the
  command (one or many nodes); each joins the process group from torchrun's environment (``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``MASTER_ADDR``); rank 0 writes every file, the others write nothing.
* ``trainer.processes=N`` without torchrun (``task=train``, and a search's final training of ``best/`` with
  ``evaluator.final_overrides.distributed=ddp``): ``processes.train_in_processes`` starts the N processes itself
  (spawn, a rendezvous file in a temporary directory), each builds the model from its generated source, and rank
  0's trained weights and metrics come back to the caller, which writes them as a one-process training would.

What makes N processes train as one: every rank draws the same global batch (the same seeded permutation and
augmentation, as a DistributedSampler would shard it) and takes its 1/N slice; DDP averages the gradients, so a step
equals one process's step on the global batch (BatchNorm statistics aside: per process on the CPU, synchronised on
CUDA with ``sync_batchnorm``). Metrics (loss, accuracy, divergence) are summed over the ranks, evaluation runs on
every rank on the same weights, so every rank takes the same decisions (early stopping, divergence) at the same step.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn

from search.training.config import ConfigError, TrainerConfig

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class Rank:
    """This process's place in the training: ``rank`` of ``world`` processes, ``local`` on its node."""
    rank: int = 0
    world: int = 1
    local: int = 0

    @property
    def writer(self) -> bool:
        """Whether this process writes files and logs (rank 0)."""
        return self.rank == 0


SINGLE = Rank()


def launched() -> bool:
    """Whether torchrun (or another launcher with its environment) started this process as one of several."""
    return all(key in os.environ for key in TORCHRUN_ENV)


def launch_rank() -> Rank:
    """This process's rank from the launcher's environment (one process: rank 0 of 1)."""
    if not launched():
        return SINGLE
    return Rank(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]))


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def rank_device(device: torch.device, rank: Rank) -> torch.device:
    """One GPU per local rank (``cuda`` or ``cuda:K`` becomes ``cuda:LOCAL_RANK``); the CPU is shared."""
    if device.type != "cuda":
        return device
    torch.cuda.set_device(rank.local)
    return torch.device("cuda", rank.local)


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[Rank]:
    """The process group this training runs in: the caller's (``train_in_processes`` set it up), or one joined from
    torchrun's environment for the length of the training."""
    if dist.is_initialized():
        yield Rank(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
        return
    if not launched():
        raise ConfigError("distributed", "ddp trains in several processes, and this one was not started as one of "
                                         "them", hint="run the command under `torchrun --nproc-per-node=N`, or set "
                                                      "trainer.processes=N to let the trainer start them")
    rank = launch_rank()
    dist.init_process_group(backend_for(device), init_method="env://")
    try:
        yield rank
    finally:
        dist.destroy_process_group()


def check_batch(cfg: TrainerConfig, world: int) -> None:
    if cfg.batch_size % world:
        raise ConfigError("batch_size", f"{cfg.batch_size} is not divisible by the {world} processes of the training",
                          hint="the batch size is the global batch; each process takes an equal slice of it")


def wrap(model: nn.Module, device: torch.device, cfg: TrainerConfig) -> nn.Module:
    """The model as DDP trains it (parameters and buffers broadcast from rank 0). With auxiliary outputs ignored
    (``aux_weight`` 0), their heads get no gradient: DDP is told to expect unused parameters."""
    from torch.nn.parallel import DistributedDataParallel
    if cfg.sync_batchnorm and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=cfg.aux_weight == 0)


def all_sum(*values: torch.Tensor) -> list[torch.Tensor]:
    """The sums over every rank (one collective for all values; floats, as gloo and NCCL both reduce them)."""
    packed = torch.stack([v.detach().to(values[0].device, torch.float64) for v in values])
    dist.all_reduce(packed)
    return list(packed.unbind())


@torch.no_grad()
def average_buffers(model: nn.Module) -> None:
    """Make the floating-point buffers (BatchNorm's running statistics, which each process updates from its own
    slice of the batch) equal on every rank: their mean over the ranks. Parameters are equal already (DDP)."""
    world = dist.get_world_size()
    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer.div_(world)


def fingerprint(model: nn.Module) -> str:
    """A hash of the model's weights and buffers: equal on every rank after a correct DDP training."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
