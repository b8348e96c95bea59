"""Score candidates without training: zero-cost proxies of the untrained network on one minibatch, and their rank
ensemble (``evaluator=zero_cost``).

Every proxy named in ``proxies`` is recorded as a metric of its own name (``naswot``, ``synflow``, ...), so
objectives and constraints may name it; ``zero_cost`` is the rank ensemble of them (``search.proxies.RankEnsemble``,
``weights`` one per proxy), ``zero_cost_s`` the seconds the scoring took.

A rank ensemble needs a set to rank in: each candidate is placed among the scores of a *reference pool*, a seeded
sample of ``reference`` architectures of the space (drawn with the run's seed), scored before the search starts and
kept in the run directory (``zero_cost_reference.json`` / ``.jsonl``), so a resumed run reads the same pool back and
gives every candidate the same ``zero_cost``. ``zero_cost`` is the weighted mean over the proxies of the candidate's
mid-rank position in the pool, in [0, 1]: higher is better, and a candidate of the pool gets exactly its rank in it.

A network a proxy cannot measure (its output does not depend on its input: a NAS-Bench-201 cell of `none` edges)
scores -inf on it. That is a result, not a failure: the status stays ``ok``, the proxy's metric is recorded as
``null`` (JSON has no infinity; an objective on that proxy then ranks the candidate with the failed ones, below every
measured one), ``unscored`` lists those proxies, and in ``zero_cost`` it ranks below every measured network of the
pool (ties among -inf share their mid-rank), so ``zero_cost`` is always a number.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from omegaconf import OmegaConf

from compiler.config_values import ConfigError, check_seed, check_value
from compiler.ir.space import Space
from search.data import DataSplits, check_dataset_config, load_dataset
from search.evaluators.base import EvaluatorBase
from search.evaluators.proxy_pool import DATA_FREE, ProxyScorer, ScoredPool, device_at, draw_pool, scored_pool
from search.proxies import RankEnsemble
from search.proxies.ensemble import DEFAULT_ENSEMBLE
from search.schema import check_proxy_names

log = logging.getLogger("search")

ENSEMBLE_METRIC = "zero_cost"
SECONDS_METRIC = "zero_cost_s"
REFERENCE_FILE = "zero_cost_reference"   # .json (the pool and its settings) and .jsonl (one line per scored member)


def _plain(config: Any) -> Any:
    return OmegaConf.to_container(config, resolve=True) if OmegaConf.is_config(config) else config


def ensemble_of(proxies: Sequence[str], weights: Sequence[float] | None, key: str) -> RankEnsemble:
    """The rank ensemble of ``proxies`` with one positive weight each (None: equal), or a ConfigError at ``key``."""
    if weights is None:
        return RankEnsemble.equal(proxies)
    weights = list(weights)
    if len(weights) != len(proxies):
        raise ConfigError(key, f"{len(weights)} weight(s) for {len(proxies)} proxies ({', '.join(proxies)})",
                          hint="one weight per proxy, in the order of `proxies`, or null for equal weights")
    for weight in weights:
        check_value(weight, float, key)
        if not (math.isfinite(weight) and weight > 0):
            raise ConfigError(key, f"weights must be positive and finite, not {weight!r}")
    return RankEnsemble(dict(zip(proxies, (float(w) for w in weights))))


class ZeroCostEvaluator(EvaluatorBase):
    """``(genotype, space) -> {proxy: score, ..., zero_cost, zero_cost_s}`` (see the module docstring). It cannot
    train: ``best/`` gets the architecture and its code, no weights."""

    def __init__(self, dataset: Mapping[str, Any], proxies: Sequence[str] | None = None,
                 weights: Sequence[float] | None = None, ensemble: bool = True, reference: int = 100,
                 batch_size: int = 32, device: str = "cpu", seed: int = 0) -> None:
        self.dataset_config = dict(_plain(dataset) or {})
        check_dataset_config(self.dataset_config)
        proxies = list(_plain(proxies)) if proxies is not None else list(DEFAULT_ENSEMBLE.members)
        if not proxies:
            raise ConfigError("evaluator.proxies", "no proxy given", hint="e.g. [naswot, jacob_cov, params]")
        self.proxies = tuple(check_proxy_names(proxies, "evaluator.proxies"))
        if weights is None and proxies == list(DEFAULT_ENSEMBLE.members):
            weights = list(DEFAULT_ENSEMBLE.weights.values())
        self.ensemble = ensemble_of(self.proxies, _plain(weights), "evaluator.weights") if ensemble else None
        self.reference_size = check_value(reference, int, "evaluator.reference", minimum=1,
                                          hint="how many architectures the ensemble ranks each candidate among")
        minimum = 1 if all(p in DATA_FREE for p in self.proxies) else 2   # a kernel needs two images
        self.batch_size = check_value(batch_size, int, "evaluator.batch_size", minimum=minimum,
                                      hint="naswot, jacob_cov and zico compare images of one minibatch: >= 2")
        self.seed = check_seed(seed, "evaluator.seed")
        self.device = device_at(device, "evaluator.device")
        self._data: DataSplits | None = None
        self._scorer: ProxyScorer | None = None
        self._reference: ScoredPool | None = None
        self._run_dir: Path | None = None

    @property
    def metric_names(self) -> tuple[str, ...]:
        return (*self.proxies, *((ENSEMBLE_METRIC,) if self.ensemble else ()), SECONDS_METRIC)

    @property
    def data(self) -> DataSplits:
        """The data set (the space is specialised to its input shape and classes; the minibatch comes from it)."""
        if self._data is None:
            self._data = load_dataset(self.dataset_config)
        return self._data

    @property
    def scorer(self) -> ProxyScorer:
        if self._scorer is None:
            self._scorer = ProxyScorer(self.proxies, self.data, self.batch_size, self.seed, self.device)
        return self._scorer

    def prepare(self, space: Space, run_dir: Path | None) -> None:
        """Score (or read back from ``run_dir``) the reference pool before the search starts."""
        self._run_dir = run_dir
        self._reference = None
        if self.ensemble is not None:
            self.reference(space)

    def reference(self, space: Space) -> ScoredPool:
        """The reference pool's scores: up to ``reference`` architectures of the space drawn with the seed (the
        whole space when it is smaller), scored once (see the module docstring)."""
        if self._reference is None:
            genotypes = draw_pool(space, min(self.reference_size, space.size), self.seed)
            settings = {"device": self.device.type, "space": space.signature()}
            self._reference = scored_pool(self.scorer, space, genotypes, self._run_dir, REFERENCE_FILE, settings)
        return self._reference

    def __call__(self, genotype: Sequence[int], space: Space) -> dict[str, Any]:
        scores, seconds = self.scorer(genotype, space)
        unscored = [n for n, v in scores.items() if v == -math.inf]
        metrics: dict[str, Any] = {n: (None if n in unscored else v) for n, v in scores.items()}
        if self.ensemble is not None:
            pool = self.reference(space)
            metrics[ENSEMBLE_METRIC] = self.ensemble.score(scores, {n: pool.column(n) for n in self.proxies})
        if unscored:
            metrics["unscored"] = unscored   # these proxies could not measure the network: recorded as null
        return {**metrics, SECONDS_METRIC: round(seconds, 6), "status": "ok"}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_data": None, "_scorer": None}   # a worker loads the data itself, once
