"""Warm start for any strategy (``search.warmup``): before the search, score ``pool`` random candidates with a
zero-cost proxy and hand them to the strategy ranked best first (``Strategy.seed_with``).

The pool is drawn with the run's seed (``draw_pool``), scored once and kept in the run directory (``warmup.json``:
its settings and genotypes; ``warmup.jsonl``: one line per scored candidate), so a resumed run reads the scores back
and proposes exactly what the uninterrupted run proposed. Scoring the pool trains nothing and is not counted in
``search.budget``, which still counts the architectures the evaluator trains or looks up.

``proxy`` is a proxy name (``synflow``, ``naswot``, ``params``, ...) or ``ensemble``: the shipped rank ensemble
(``search.proxies.ensemble.DEFAULT_ENSEMBLE``), ranked within the pool. Ties keep the pool's order; a candidate a
proxy cannot measure (-inf) ranks last.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from compiler.config_values import ConfigError
from compiler.errors import ArchError
from compiler.ir.space import Genotype, Space
from search.data import DataSplits
from search.evaluators.proxy_pool import DATA_FREE, ProxyScorer, ScoredPool, device_at, draw_pool, scored_pool
from search.proxies.ensemble import DEFAULT_ENSEMBLE
from search.schema import WARMUP_ENSEMBLE as ENSEMBLE, WarmupConfig, check_warmup

log = logging.getLogger("search")

WARMUP_FILE = "warmup"   # warmup.json and warmup.jsonl in the run directory


def members(proxy: str) -> tuple[str, ...]:
    """The proxies that ``proxy`` (a name or ``ensemble``) is computed from."""
    return DEFAULT_ENSEMBLE.members if proxy == ENSEMBLE else (proxy,)


def needs_data(proxy: str) -> bool:
    """Whether ``proxy`` reads images (synflow, params and macs do not)."""
    return any(m not in DATA_FREE for m in members(proxy))


def pool_ranking(pool: ScoredPool, proxy: str) -> np.ndarray:
    """One score per pool member, higher is better: the proxy's, or the ensemble's rank score within the pool."""
    if proxy == ENSEMBLE:   # rounded: equal rank sums added in another order must tie, not differ in the last bit
        return np.round(DEFAULT_ENSEMBLE.rank_scores({m: pool.column(m) for m in DEFAULT_ENSEMBLE.members}), 12)
    return pool.column(proxy)


def rank_pool(pool: ScoredPool, proxy: str) -> list[Genotype]:
    """The pool's genotypes, best first by ``proxy``; ties (and several -inf) keep the pool's order."""
    values = pool_ranking(pool, proxy)
    order = sorted(range(len(pool.genotypes)), key=lambda i: -values[i])   # stable: ties in pool order
    return [pool.genotypes[i] for i in order]


def input_shape(space: Space, genotypes: list[Genotype]) -> tuple[int, ...] | None:
    """The input shape of the space's networks (that of the first of ``genotypes`` that compiles), or None."""
    for genotype in genotypes:
        try:
            return tuple(space.compile(genotype).graph.inputs[0].shape)
        except ArchError:
            continue   # an invalid combination: the next one tells the same
    return None


@dataclass
class Warmup:
    """Scores a pool of the space before the search and ranks it (the search loop seeds its strategy with it)."""

    proxy: str
    pool: int
    scorer: ProxyScorer

    @classmethod
    def of(cls, config: WarmupConfig, data: Callable[[], DataSplits], seed: int) -> "Warmup":
        """From ``search.warmup`` (checked); ``data`` gives the data set of the minibatch (called only when the
        proxy reads images)."""
        check_warmup(config)
        device = device_at(config.device, "search.warmup.device")
        images = data() if needs_data(config.proxy) else None
        return cls(config.proxy, config.pool, ProxyScorer(members(config.proxy), images, config.batch_size, seed,
                                                          device))

    def check_space(self, space: Space) -> None:
        """Refuse, before any work, a pool the space cannot fill or a data set whose images it does not take."""
        if self.pool > space.size:
            raise ConfigError("search.warmup.pool", f"{self.pool} candidates, but the space {space.name} has only "
                              f"{space.size:,} architectures", hint=f"at most {space.size}")
        data = self.scorer.data
        takes = input_shape(space, draw_pool(space, self.pool, self.scorer.seed))
        if self.scorer.needs_data and data is not None and takes is not None:
            if tuple(data.input_shape) != takes:
                raise ConfigError("search.warmup.proxy", f"the proxy {self.proxy} scores networks on images of the "
                                  f"data set {data.name} ({list(data.input_shape)}), but the space takes "
                                  f"{list(takes)}", hint="choose the matching dataset=..., or a data-free proxy "
                                  "(synflow, params, macs)")

    def ranked(self, space: Space, run_dir: Path | None) -> list[Genotype]:
        """The pool, best first (scored now, or read back from ``run_dir``)."""
        genotypes = draw_pool(space, self.pool, self.scorer.seed)
        settings = {"proxy": self.proxy, "device": self.scorer.device.type, "space": space.signature()}
        pool = scored_pool(self.scorer, space, genotypes, run_dir, WARMUP_FILE, settings)
        seconds = sum(pool.seconds)
        log.info("warm start: %d candidate(s) scored with %s in %.1f s (%d now, %d read back)", self.pool, self.proxy,
                 seconds, pool.scored_now, self.pool - pool.scored_now)
        return rank_pool(pool, self.proxy)
