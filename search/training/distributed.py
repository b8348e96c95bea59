"""``trainer.distributed=ddp``: one training on several processes (GPUs, or CPU processes with gloo) with PyTorch's
DistributedDataParallel.

Two ways in, one training:
* ``torchrun --nproc-per-node=N -m compiler task=train ... trainer.distributed=ddp``: torchrun starts N copies of the
  command (one or many nodes); each joins the process group from torchrun's environment (``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``MASTER_ADDR``); rank 0 writes every file, the others write nothing.
* ``trainer.processes=N`` without torchrun (``task=train``, and a search's final training of ``best/`` with
  ``evaluator.final_overrides.distributed=ddp``): ``train_in_processes`` starts the N processes itself (spawn, a
  rendezvous file in a temporary directory), each builds the model from its generated source, and rank 0's trained
  weights and metrics come back to the caller, which writes them as a one-process training would.

What makes N processes train as one: every rank draws the same global batch (the same seeded permutation and
augmentation, as a DistributedSampler would shard it) and takes its 1/N slice; DDP averages the gradients, so a step
equals one process's step on the global batch (BatchNorm statistics aside: per process on the CPU, synchronised on
CUDA with ``sync_batchnorm``). Metrics (loss, accuracy, divergence) are summed over the ranks, evaluation runs on
every rank on the same weights, so every rank takes the same decisions (early stopping, divergence) at the same step.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Iterator

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


# ---- the trainer starting its own processes ---------------------------------------------------------------------

@dataclass(frozen=True)
class ModelSource:
    """What builds the model in another process: the generated PyTorch source (model.py), picklable where a built
    module is not. Seeded the same in every process, it builds the same initial weights."""
    source: str
    name: str

    @classmethod
    def of(cls, compiled: Any) -> "ModelSource":
        return cls(compiled.source, compiled.graph.name)

    def build(self) -> nn.Module:
        from compiler.api import load_source
        return load_source(self.source, f"<generated {self.name}.py>")["build_model"]()


@dataclass
class RankOutcome:
    status: str
    message: str
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    fingerprint: str
    state: dict[str, torch.Tensor] | None   # rank 0's trained weights (every rank's with ``all_states``)


def _rank_main(local: int, world: int, rendezvous: str, folder: str, model: ModelSource, data: Any,
               cfg: TrainerConfig, seed: int, all_states: bool) -> None:
    """One process of ``train_in_processes`` (started by torch.multiprocessing with its index first)."""
    from search.training.trainer import resolve_device, seed_everything, train

    os.environ.update(RANK=str(local), WORLD_SIZE=str(world), LOCAL_RANK=str(local))
    device = resolve_device(cfg.device)
    dist.init_process_group(backend_for(device), init_method=rendezvous, rank=local, world_size=world)
    try:
        seed_everything(seed)   # the same initial weights on every rank, and as a one-process training builds them
        result = train(model.build(), data, cfg)
        trained = result.model
        outcome = {"status": result.status, "message": result.message, "metrics": result.metrics,
                   "history": result.history, "fingerprint": fingerprint(trained) if trained is not None else "",
                   "state": ({k: v.detach().cpu() for k, v in trained.state_dict().items()}
                             if trained is not None and (local == 0 or all_states) else None)}
        buffer = io.BytesIO()
        torch.save(outcome, buffer)  # plain containers and tensors: read back with weights_only=True
        with open(os.path.join(folder, f"rank{local}.pt"), "wb") as f:
            f.write(buffer.getvalue())
    finally:
        dist.destroy_process_group()


def run_ranks(model: ModelSource, data: Any, cfg: TrainerConfig, processes: int, seed: int,
              all_states: bool = False) -> list[RankOutcome]:
    """Train on ``processes`` processes started here; every rank's outcome, in rank order."""
    import torch.multiprocessing as mp

    check_batch(cfg, processes)
    with tempfile.TemporaryDirectory(prefix="ddp-") as folder:
        rendezvous = "file://" + os.path.join(folder, "rendezvous")
        mp.start_processes(_rank_main, args=(processes, rendezvous, folder, model, data, cfg, seed, all_states),
                           nprocs=processes, join=True, start_method="spawn")
        outcomes = []
        for rank in range(processes):
            with open(os.path.join(folder, f"rank{rank}.pt"), "rb") as f:
                outcomes.append(RankOutcome(**torch.load(io.BytesIO(f.read()), weights_only=True)))
    return outcomes


def default_processes(cfg: TrainerConfig) -> int:
    """``trainer.processes``, or one per visible GPU."""
    if cfg.processes is not None:
        return cfg.processes
    gpus = torch.cuda.device_count() if cfg.device != "cpu" else 0
    if gpus < 1:
        raise ConfigError("processes", "distributed=ddp without torchrun starts one process per GPU, and there is "
                                       "no GPU", hint="set trainer.processes=N (e.g. 2) to train with N CPU processes")
    return gpus


def train_in_processes(model: ModelSource, data: Any, cfg: TrainerConfig, seed: int,
                       on_epoch: Callable[[dict[str, Any]], Any] | None = None) -> Any:
    """``train`` on ``trainer.processes`` processes started here: a TrainResult like a one-process training's, with
    rank 0's trained model. ``on_epoch`` sees the epochs afterwards (to log them; it cannot stop the training)."""
    from search.training.trainer import TrainResult

    processes = default_processes(cfg)
    outcomes = run_ranks(model, data, cfg, processes, seed)
    first = outcomes[0]
    if len({o.fingerprint for o in outcomes}) != 1:  # DDP keeps replicas equal; a difference is a bug, not a result
        raise RuntimeError(f"the {processes} processes ended with different weights: "
                           + ", ".join(o.fingerprint[:12] for o in outcomes))
    trained = None
    if first.state is not None:
        trained = model.build()
        trained.load_state_dict(first.state)
    for record in first.history if on_epoch is not None else ():
        on_epoch(record)
    return TrainResult(first.status, first.message, first.metrics, first.history, trained)
