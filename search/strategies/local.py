"""Local search over one-decision neighbourhoods (first improvement, restarts at local optima).

Start from the best of ``init_samples`` random genotypes, try its neighbours one at a time and move to the first
that is better; at a local optimum (every neighbour tried, none better) restart from the best of a fresh random
sample. ``order`` says in which order the neighbours are tried:

* ``"random"`` — a random permutation (the textbook algorithm);
* ``"model"`` — most promising first, by a ridge regression of the results so far (one-hot decisions -> rank of
  the fitness). The model only reorders the neighbourhood, so the search still tries every neighbour before it
  declares a local optimum; it just reaches the improving ones sooner.

Warm-started (``search.warmup``), the random samples are the proxy's best, in order (``Strategy._draw``).

Results already known (told earlier, also by other means) are used at once and cost nothing. With several ranked
objectives "better" means Pareto-dominates (``ObjectiveSet.better``): the search moves to a neighbour that dominates
the current genotype, and starts from the best-ranked sample (front, then crowding).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from search.objectives import Fitness, ObjectiveSet
from compiler.ir.space import Genotype
from search.strategies.base import Strategy, decode_pairs, encode_pairs
from search.strategies.surrogate import AdditiveModel

ORDERS = ("random", "model")


def known_keys(objectives: ObjectiveSet, known: Mapping[Genotype, Fitness]) -> dict[Genotype, Any]:
    """Each known genotype's sort key among all known results (``ObjectiveSet.rank_keys``)."""
    return dict(zip(known, objectives.rank_keys(list(known.values()))))


class LocalSearch(Strategy):
    def __init__(self, space: Any, seed: int = 0, objectives: Any = None, init_samples: int = 10,
                 order: str = "random", ridge: float = 1.0) -> None:
        super().__init__(space, seed, objectives)
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, not {order!r}")
        if init_samples < 1:
            raise ValueError(f"init_samples must be >= 1, not {init_samples}")
        self.init_samples = init_samples
        self.order = order
        self.ridge = ridge
        self.known: dict[Genotype, Fitness] = {}
        self.pool: list[tuple[Genotype, Fitness]] = []   # this restart's random samples
        self.current: tuple[Genotype, Fitness] | None = None
        self.queue: list[Genotype] = []                  # neighbours of current still to try

    def _propose(self) -> Genotype:
        while self.current is not None:
            if not self.queue:  # local optimum: every neighbour tried, none better
                self.current, self.pool = None, []
                break
            candidate = self.queue.pop(0)
            if candidate not in self.known:
                return candidate
            self._consider(candidate, self.known[candidate])
        return self._draw()

    def _observe(self, genotype: Genotype, fitness: Fitness, metrics: Mapping[str, Any]) -> None:
        self.known[genotype] = fitness
        if self.current is not None:
            self._consider(genotype, fitness)
            return
        self.pool.append((genotype, fitness))
        if len(self.pool) >= self.init_samples:
            keys = self.objectives.rank_keys([f for _, f in self.pool])
            self._move_to(self.pool[max(range(len(self.pool)), key=keys.__getitem__)])

    def _consider(self, genotype: Genotype, fitness: Fitness) -> None:
        assert self.current is not None
        if self.objectives.better(fitness, self.current[1]):
            self._move_to((genotype, fitness))

    def _move_to(self, member: tuple[Genotype, Fitness]) -> None:
        self.current = member
        around = self.space.neighbours(member[0])
        if self.order == "random":
            self.queue = [around[int(i)] for i in self.rng.permutation(len(around))]
        else:
            self.queue = self._by_model(around)

    def _by_model(self, around: list[Genotype]) -> list[Genotype]:
        model = AdditiveModel.fit(self.space.cardinalities, known_keys(self.objectives, self.known), self.ridge)
        scores = model.predict(around)
        ties = self.rng.random(len(around))  # random among equal predictions
        return [around[int(i)] for i in np.lexsort((ties, -scores))]

    def _state(self) -> dict[str, Any]:
        return {"known": encode_pairs(list(self.known.items())), "pool": encode_pairs(self.pool),
                "current": None if self.current is None else encode_pairs([self.current])[0],
                "queue": [list(g) for g in self.queue]}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        self.known = dict(decode_pairs(state["known"]))
        self.pool = decode_pairs(state["pool"])
        self.current = None if state["current"] is None else decode_pairs([state["current"]])[0]
        self.queue = [tuple(int(v) for v in g) for g in state["queue"]]


class GuidedLocalSearch(Strategy):
    """Best-first neighbourhood search guided by a surrogate (the default ``local``).

    After ``init_samples`` random genotypes, each proposal is, among the not yet evaluated one-decision neighbours
    of the ``centres`` best results so far, the one the surrogate (``AdditiveModel``: ridge regression of fitness
    ranks; with several ranked objectives, of the Pareto ranks) ranks highest. With ``centres=1`` this is a
    steepest-first hill climb of the best result; more centres let the search leave a local optimum for the most
    promising neighbour of the runners-up instead of restarting from scratch. When no candidate is left it falls
    back to a random genotype.
    """

    def __init__(self, space: Any, seed: int = 0, objectives: Any = None, init_samples: int = 5,
                 centres: int = 20, ridge: float = 1.0) -> None:
        super().__init__(space, seed, objectives)
        if init_samples < 1 or centres < 1:
            raise ValueError(f"init_samples ({init_samples}) and centres ({centres}) must be >= 1")
        self.init_samples = init_samples
        self.centres = centres
        self.ridge = ridge
        self.known: dict[Genotype, Fitness] = {}
        self.pending: set[Genotype] = set()  # proposed, not yet told (so a batch ask gives distinct genotypes)

    def _propose(self) -> Genotype:
        genotype = self._candidate() if len(self.known) >= self.init_samples else None
        if genotype is None:
            genotype = self._draw()
        self.pending.add(genotype)
        return genotype

    def _candidate(self) -> Genotype | None:
        keys = known_keys(self.objectives, self.known)
        best = sorted(self.known, key=keys.__getitem__, reverse=True)[:self.centres]
        candidates = sorted({g for centre in best for g in self.space.neighbours(centre)
                             if g not in self.known and g not in self.pending})
        if not candidates:
            return None
        scores = AdditiveModel.fit(self.space.cardinalities, keys, self.ridge).predict(candidates)
        ties = self.rng.random(len(candidates))
        return candidates[int(np.lexsort((ties, -scores))[0])]

    def _observe(self, genotype: Genotype, fitness: Fitness, metrics: Mapping[str, Any]) -> None:
        self.known[genotype] = fitness
        self.pending.discard(genotype)

    def _state(self) -> dict[str, Any]:
        return {"known": encode_pairs(list(self.known.items())), "pending": [list(g) for g in sorted(self.pending)]}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        self.known = dict(decode_pairs(state["known"]))
        self.pending = {tuple(int(v) for v in g) for g in state["pending"]}
