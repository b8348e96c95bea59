"""Zero-cost proxies applied to a space: score a genotype (``ProxyScorer``), draw a seeded pool of distinct genotypes
(``draw_pool``), and score a pool once per run directory (``scored_pool``), journaled so a resumed run reads it back.

Both users of a pool go through here: the zero-cost evaluator ranks each candidate against a reference pool
(``search/evaluators/zero_cost.py``) and the warm start ranks a pool to seed a strategy (``search/warmup.py``).

A candidate's score depends only on (genotype, seed, minibatch): its network is built under its own seed
(``candidate_seed(seed, genotype)``, as the training evaluator builds it) on the CPU and moved to the device, and the
minibatch is drawn on the CPU with ``seed``, so CPU and CUDA score the same network on the same images. A proxy
that cannot measure a network scores -inf (``search.proxies.WORST``); JSON has no infinity, so the run directory's
files hold -inf as ``null``.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from compiler.config_values import ConfigError
from compiler.errors import ArchError, Span
from compiler.ir.space import Genotype, Space
from search.data import DataSplits, DeviceLoader, Split
from search.evaluators.train import candidate_seed
from search.journal import Journal, atomic_write_json, read_json
from search.proxies import WORST, measure_proxies
from search.training.trainer import resolve_device

log = logging.getLogger("search")

POOL_TAG = 0x5EED9001   # the pool's own random stream: a strategy's and the budget wrapper's stay untouched
DATA_FREE = ("synflow", "params", "macs")   # synflow reads only the input's shape; params and macs no input at all
MODEL_FREE = ("params", "macs")             # from the compiler's cost analysis: no network is built


def device_at(name: str, key: str) -> torch.device:
    """The torch device ``name`` (cpu | cuda | cuda:N | auto), or a ConfigError at ``key``."""
    try:
        return resolve_device(str(name))
    except (ConfigError, RuntimeError) as err:
        message = err.message if isinstance(err, ConfigError) else str(err).splitlines()[0]
        raise ConfigError(key, message, hint="cpu, cuda, cuda:N or auto") from err


def draw_pool(space: Space, size: int, seed: int) -> list[Genotype]:
    """``size`` distinct genotypes of ``space``, drawn uniformly with their own seeded stream (the same list for the
    same space sizes and seed). A ValueError if the space has fewer."""
    if size > space.size:
        raise ValueError(f"a pool of {size} needs that many distinct architectures; the space has {space.size}")
    rng = np.random.default_rng([seed, POOL_TAG])
    if size * 2 > space.size:   # most of the space: a seeded permutation of all of it
        order = rng.permutation(space.size)[:size]
        return [space.genotype_at(int(i)) for i in order]
    pool: dict[Genotype, None] = {}
    while len(pool) < size:
        pool.setdefault(space.random_genotype(rng), None)
    return list(pool)


def proxy_minibatch(data: DataSplits, batch_size: int, seed: int, device: torch.device
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """One normalised, unaugmented minibatch of the training split, drawn on the CPU with ``seed`` (the first batch
    of a ``DeviceLoader(shuffle=True, seed=seed)``, as ``bench/zero_cost_nb201.py`` scores), then moved."""
    split = data.train
    index = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:batch_size]
    on_device = index.to(split.images.device)
    batch = Split(split.images[on_device].cpu(), split.labels[on_device].cpu())
    inputs, targets = next(iter(DeviceLoader(batch, len(batch), "cpu", data.mean, data.std)))
    return inputs.to(device), targets.to(device)


@dataclass
class ProxyScorer:
    """Scores genotypes of a space with the proxies ``names`` (see the module docstring). ``data`` may be None when
    every proxy is data-free (``DATA_FREE``)."""

    names: tuple[str, ...]
    data: DataSplits | None = None
    batch_size: int = 32
    seed: int = 0
    device: torch.device = torch.device("cpu")

    def __post_init__(self) -> None:
        self.names = tuple(self.names)
        if self.needs_data and self.data is None:
            raise ValueError(f"the proxies {', '.join(self.names)} need a data set")
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def needs_data(self) -> bool:
        return any(n not in DATA_FREE for n in self.names)

    @property
    def needs_model(self) -> bool:
        return any(n not in MODEL_FREE for n in self.names)

    def _inputs(self, input_shape: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not self.needs_data:   # synflow: a placeholder of the input's shape (its data is never read)
            return torch.zeros((1, *input_shape), device=self.device), None
        if self._batch is None:
            assert self.data is not None
            self._batch = proxy_minibatch(self.data, self.batch_size, self.seed, self.device)
        return self._batch

    def __call__(self, genotype: Sequence[int], space: Space) -> tuple[dict[str, float], float]:
        """(proxy -> score, wall seconds of compile, build and scoring); a score that is no finite number is -inf."""
        start = time.perf_counter()
        compiled = space.compile(genotype)
        probe: dict[str, Any] = {"summary": compiled.summary, "seed": self.seed}
        if self.needs_model:
            with torch.random.fork_rng(devices=[]):   # the caller's RNG stays as it was
                torch.manual_seed(candidate_seed(self.seed, list(genotype)))
                probe["model"] = compiled.build()
            probe["inputs"], probe["targets"] = self._inputs(compiled.graph.inputs[0].shape)
        return measure_proxies(self.names, **probe).scores, time.perf_counter() - start

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_batch": None}


def encode_scores(scores: Mapping[str, float]) -> dict[str, float | None]:
    """JSON-able scores: -inf (a network the proxy cannot measure) as null."""
    return {k: (float(v) if math.isfinite(v) else None) for k, v in scores.items()}


def decode_scores(scores: Mapping[str, Any]) -> dict[str, float]:
    return {k: (WORST if v is None else float(v)) for k, v in scores.items()}


@dataclass(frozen=True)
class ScoredPool:
    genotypes: list[Genotype]
    scores: dict[str, list[float]]   # proxy -> one score per genotype, in pool order (-inf: cannot be measured)
    seconds: list[float]             # wall time of scoring each genotype (when it was scored)
    scored_now: int = 0              # how many were scored by this call (the others were read back)

    def column(self, name: str) -> np.ndarray:
        return np.asarray(self.scores[name], dtype=np.float64)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_score(value: Any) -> bool:
    """A kept score: a number, or null (-inf: the proxy could not measure the network)."""
    return value is None or _is_number(value)


def journal_error(path: Path, message: str, line: int = 0) -> ArchError:
    """A located error about a kept score file (pool or screen) that does not belong to this run's settings."""
    return ArchError(message, Span(str(path), line, 1 if line else 0),
                     hint="use the settings of that run, a new out_dir, or delete the file to score again")


def open_scores(run_dir: Path, name: str, header: Mapping[str, Any], what: str) -> Journal:
    """The journal ``NAME.jsonl`` in ``run_dir`` whose scores were taken with ``header`` (kept as ``NAME.json``,
    written on first use): scores of other settings are refused (``what`` says what the file then holds), so a
    resumed run never mixes them in."""
    head_path, journal = run_dir / f"{name}.json", Journal(run_dir / f"{name}.jsonl")
    try:
        recorded = read_json(head_path)
    except json.JSONDecodeError as err:
        raise journal_error(head_path, f"not valid JSON ({err.msg})", err.lineno) from err
    if recorded is not None and recorded != json.loads(json.dumps(header)):
        raise journal_error(head_path, f"{head_path} holds {what}")
    if recorded is None:
        if journal.path.exists():
            raise journal_error(journal.path, f"{journal.path} has no {head_path.name} beside it")
        atomic_write_json(head_path, header)
    return journal


def score_one(scorer: ProxyScorer, genotype: Genotype, space: Space) -> tuple[dict[str, float], float, str]:
    """``scorer``'s values, seconds and status for ``genotype``: an invalid combination of choices is a result
    (every proxy WORST, so it ranks last), as it is in the search."""
    try:
        values, spent = scorer(genotype, space)
        return values, spent, "ok"
    except ArchError:
        return {n: WORST for n in scorer.names}, 0.0, "invalid"


def scored_pool(scorer: ProxyScorer, space: Space, genotypes: Sequence[Genotype], run_dir: Path | None, name: str,
                settings: Mapping[str, Any] | None = None) -> ScoredPool:
    """Scores of ``genotypes`` with ``scorer``, kept in ``run_dir`` as ``NAME.json`` (what the pool is: its
    settings and genotypes) and ``NAME.jsonl`` (one journal record per scored genotype, written as it is scored).
    A later call on the same directory reads them back and scores only what is missing (a kill mid-pool loses at
    most one genotype's work); a pool of other settings there is refused. ``run_dir`` None: in memory only."""
    genotypes = [tuple(int(v) for v in g) for g in genotypes]
    header = {"settings": {"proxies": list(scorer.names), "seed": scorer.seed, "batch_size": scorer.batch_size,
                           **(settings or {})},
              "genotypes": [list(g) for g in genotypes]}
    journal = None
    done: list[dict[str, Any]] = []
    if run_dir is not None:
        journal = open_scores(run_dir, name, header, "a pool of other settings or genotypes")
        done = journal.read()
        for record in done:
            if (record["index"] >= len(genotypes) or tuple(record["genotype"]) != genotypes[record["index"]]
                    or not all(_is_score(record["metrics"].get(n, "missing")) for n in scorer.names)
                    or not _is_number(record.get("seconds"))):
                raise journal_error(journal.path, "a record that is not this pool's", record["index"] + 1)
    scores: dict[str, list[float]] = {n: [] for n in scorer.names}
    seconds: list[float] = []
    for record in done:
        values = decode_scores({n: record["metrics"][n] for n in scorer.names})
        for n in scorer.names:
            scores[n].append(values[n])
        seconds.append(float(record["seconds"]))
    todo = genotypes[len(done):]
    if todo:
        log.info("scoring %d candidate(s) with %s (%s)", len(todo), ", ".join(scorer.names), name)
    for index, genotype in enumerate(todo, start=len(done)):
        values, spent, status = score_one(scorer, genotype, space)
        spent = round(spent, 6)
        if journal is not None:
            journal.add(index, genotype, space.describe(genotype), "", {**encode_scores(values), "status": status},
                        spent)
        for n in scorer.names:
            scores[n].append(values[n])
        seconds.append(spent)
    return ScoredPool(genotypes, scores, seconds, len(todo))
