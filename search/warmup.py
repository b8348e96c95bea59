"""Warm start for any strategy (``search.warmup``): before the search, score ``pool`` random candidates with a
zero-cost proxy and hand them to the strategy ranked best first (``Strategy.seed_with``); and zero-cost move
proposal (``moves`` > 1): each child of a strategy that mutates is the proxy's best of ``moves`` mutations of its
parent (``Strategy.screen_with``; Abdelfattah et al., ICLR 2021, Sec. 5). Either works without the other.

The pool is drawn with the run's seed (``draw_pool``), scored once and kept in the run directory (``warmup.json``:
its settings and genotypes; ``warmup.jsonl``: one line per scored candidate), so a resumed run reads the scores back
and proposes exactly what the uninterrupted run proposed. The screened children are kept alike (``screen.json``:
the settings; ``screen.jsonl``: one line per child, scored once per run). Scoring trains nothing and is not counted
in ``search.budget``, which still counts the architectures the evaluator trains or looks up.

``proxy`` is a proxy name (``synflow``, ``naswot``, ``params``, ...) or ``ensemble``: the shipped rank ensemble
(``search.proxies.ensemble.DEFAULT_ENSEMBLE``), ranked within the pool; a screened child's ensemble score is its
rank position against the pool (``RankEnsemble.score``), or, without a pool, its rank among its siblings. Against
the pool is the better choice where there is one: within a few siblings a rank step is a rank step however small the
difference; on NAS-Bench-201 the child picked against the pool was the better one by the table per screening,
while end to end the two tie within noise (BENCHMARKS.md).
Ties keep the pool's (the drawing) order; a candidate a proxy cannot measure (-inf) ranks last.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from compiler.config_values import ConfigError
from compiler.errors import ArchError
from compiler.ir.space import Genotype, Space
from search.data import DataSplits
from search.evaluators.proxy_pool import (DATA_FREE, ProxyScorer, ScoredPool, decode_scores, device_at, draw_pool,
                                          encode_scores, journal_error, open_scores, score_one, scored_pool)
from search.journal import Journal
from search.proxies.ensemble import DEFAULT_ENSEMBLE
from search.schema import WARMUP_ENSEMBLE as ENSEMBLE, WarmupConfig, check_warmup

log = logging.getLogger("search")

WARMUP_FILE = "warmup"   # warmup.json and warmup.jsonl in the run directory
SCREEN_FILE = "screen"   # screen.json and screen.jsonl in the run directory


def members(proxy: str) -> tuple[str, ...]:
    """The proxies that ``proxy`` (a name or ``ensemble``) is computed from."""
    return DEFAULT_ENSEMBLE.members if proxy == ENSEMBLE else (proxy,)


def needs_data(proxy: str) -> bool:
    """Whether ``proxy`` reads images (synflow, params and macs do not)."""
    return any(m not in DATA_FREE for m in members(proxy))


def ranking(columns: Mapping[str, Sequence[float]], proxy: str,
            reference: Mapping[str, Sequence[float]] | None = None) -> np.ndarray:
    """One score per candidate of a scored set (``columns``: proxy -> one score each), higher is better: the proxy's,
    or the ensemble's: rank position against ``reference`` (a scored pool) if given, else rank within the set."""
    if proxy != ENSEMBLE:
        return np.asarray(columns[proxy], dtype=np.float64)
    members = DEFAULT_ENSEMBLE.members
    if reference is None:
        scores = DEFAULT_ENSEMBLE.rank_scores({m: columns[m] for m in members})
    else:
        scores = np.array([DEFAULT_ENSEMBLE.score({m: columns[m][i] for m in members}, reference)
                           for i in range(len(columns[members[0]]))])
    return np.round(scores, 12)   # equal rank sums added in another order must tie, not differ in the last bit


def pool_ranking(pool: ScoredPool, proxy: str) -> np.ndarray:
    """One score per pool member, higher is better (``ranking`` within the pool)."""
    return ranking(pool.scores, proxy)


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
class ProxyScreen:
    """The screen of ``Strategy.screen_with``: scores candidates with ``scorer`` (each once per run, kept in
    ``run_dir`` and read back on resume) and ranks them by ``proxy`` (``ranking``: the ensemble against
    ``reference``, the warm start's scored pool, if there is one)."""

    scorer: ProxyScorer
    proxy: str
    space: Space
    run_dir: Path | None = None
    reference: Mapping[str, Sequence[float]] | None = None
    scores: dict[Genotype, dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0   # spent scoring in this process (read-back scores cost nothing)
    scored_now: int = 0
    screenings: int = 0

    def __post_init__(self) -> None:
        self.journal: Journal | None = None
        if self.run_dir is None:
            return
        settings = {"proxies": list(self.scorer.names), "proxy": self.proxy, "seed": self.scorer.seed,
                    "batch_size": self.scorer.batch_size, "device": self.scorer.device.type,
                    "space": self.space.signature(), "against_pool": self.reference is not None}
        self.journal = open_scores(self.run_dir, SCREEN_FILE, {"settings": settings},
                                   "the screen of other settings")
        for record in self.journal.read():
            if any(n not in record["metrics"] for n in self.scorer.names):
                raise journal_error(self.journal.path, "a record that is not this screen's", record["index"] + 1)
            self.scores[tuple(record["genotype"])] = decode_scores({n: record["metrics"][n]
                                                                    for n in self.scorer.names})

    def __call__(self, candidates: Sequence[Genotype]) -> list[float]:
        for genotype in candidates:
            if genotype not in self.scores:
                self._score(tuple(genotype))
        self.screenings += 1
        columns = {n: [self.scores[tuple(g)][n] for g in candidates] for n in self.scorer.names}
        return [float(v) for v in ranking(columns, self.proxy, self.reference)]

    def _score(self, genotype: Genotype) -> None:
        values, spent, status = score_one(self.scorer, genotype, self.space)
        if self.journal is not None:
            self.journal.add(len(self.scores), genotype, self.space.describe(genotype), "",
                             {**encode_scores(values), "status": status}, round(spent, 6))
        self.scores[genotype] = values
        self.seconds += spent
        self.scored_now += 1


@dataclass
class Warmup:
    """Scores a pool of the space before the search and ranks it (the search loop seeds its strategy with it), and
    screens mutations (``moves`` > 1: the loop hands ``screen`` to its strategy)."""

    proxy: str
    pool: int
    scorer: ProxyScorer
    moves: int = 1

    @classmethod
    def of(cls, config: WarmupConfig, data: Callable[[], DataSplits], seed: int) -> "Warmup":
        """From ``search.warmup`` (checked); ``data`` gives the data set of the minibatch (called only when the
        proxy reads images)."""
        check_warmup(config)
        device = device_at(config.device, "search.warmup.device")
        images = data() if needs_data(config.proxy) else None
        return cls(config.proxy, config.pool, ProxyScorer(members(config.proxy), images, config.batch_size, seed,
                                                          device), config.moves)

    def check_space(self, space: Space) -> None:
        """Refuse, before any work, a pool the space cannot fill or a data set whose images it does not take."""
        if self.pool > space.size:
            raise ConfigError("search.warmup.pool", f"{self.pool} candidates, but the space {space.name} has only "
                              f"{space.size:,} architectures", hint=f"at most {space.size}")
        data = self.scorer.data
        takes = input_shape(space, draw_pool(space, max(self.pool, min(space.size, 10)), self.scorer.seed))
        if self.scorer.needs_data and data is not None and takes is not None:
            if tuple(data.input_shape) != takes:
                raise ConfigError("search.warmup.proxy", f"the proxy {self.proxy} scores networks on images of the "
                                  f"data set {data.name} ({list(data.input_shape)}), but the space takes "
                                  f"{list(takes)}", hint="choose the matching dataset=..., or a data-free proxy "
                                  "(synflow, params, macs)")

    def scored(self, space: Space, run_dir: Path | None) -> ScoredPool:
        """The pool with its scores (scored now, or read back from ``run_dir``)."""
        genotypes = draw_pool(space, self.pool, self.scorer.seed)
        settings = {"proxy": self.proxy, "device": self.scorer.device.type, "space": space.signature()}
        pool = scored_pool(self.scorer, space, genotypes, run_dir, WARMUP_FILE, settings)
        seconds = sum(pool.seconds)
        log.info("warm start: %d candidate(s) scored with %s in %.1f s (%d now, %d read back)", self.pool, self.proxy,
                 seconds, pool.scored_now, self.pool - pool.scored_now)
        return pool

    def ranked(self, space: Space, run_dir: Path | None) -> list[Genotype]:
        """The pool, best first (scored now, or read back from ``run_dir``)."""
        return rank_pool(self.scored(space, run_dir), self.proxy)

    def screen(self, space: Space, run_dir: Path | None, pool: ScoredPool | None = None) -> ProxyScreen:
        """The screen of the strategy's mutations (its scores read back from ``run_dir``); the ensemble ranks the
        children against ``pool``'s scores when given."""
        return ProxyScreen(self.scorer, self.proxy, space, run_dir, None if pool is None else pool.scores)
