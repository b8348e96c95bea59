"""``trainer.distributed=ddp`` without torchrun: the trainer starts ``trainer.processes`` processes itself (spawn,
a rendezvous file in a temporary directory); each builds the model from its generated source and trains one rank
(``distributed.py``), and rank 0's trained weights and metrics come back to the caller, which writes them as a
one-process training would."""
from __future__ import annotations

import dataclasses
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn

from compiler.errors import ArchError, Span
from search.training.config import ConfigError, TrainerConfig
from search.training.distributed import backend_for, check_batch, fingerprint
from search.training.trainer import TrainResult, resolve_device, seed_everything, train


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
    os.environ.update(RANK=str(local), WORLD_SIZE=str(world), LOCAL_RANK=str(local))
    device = resolve_device(cfg.device)
    dist.init_process_group(backend_for(device), init_method=rendezvous, rank=local, world_size=world)
    try:
        seed_everything(seed)   # the same initial weights on every rank, and as a one-process training builds them
        try:
            result = train(model.build(), data, cfg)
        except ArchError as err:   # a user's mistake: the parent raises it as such, not as a rank's traceback
            mistake = {"message": err.message, "hint": err.hint,
                       "span": None if err.span is None else dataclasses.asdict(err.span)}
            with open(os.path.join(folder, f"rank{local}.mistake.json"), "w") as f:
                json.dump(mistake, f)
            raise
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
        try:
            mp.start_processes(_rank_main, args=(processes, rendezvous, folder, model, data, cfg, seed, all_states),
                               nprocs=processes, join=True, start_method="spawn")
        except mp.ProcessRaisedException as err:
            mistakes = sorted(Path(folder).glob("rank*.mistake.json"))
            if not mistakes:
                raise
            mistake = json.loads(mistakes[0].read_text())
            span = Span(**mistake["span"]) if mistake["span"] else None
            raise ArchError(mistake["message"], span, hint=mistake["hint"]) from err
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
