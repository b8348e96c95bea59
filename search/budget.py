"""Budget in *distinct* evaluations: a strategy never pays twice for the same architecture.

``BudgetedSearch`` sits between a strategy and an evaluator. A proposal that was already evaluated is answered from
the cache (the strategy is told the stored metrics) without charging the budget. When a strategy keeps proposing
evaluated genotypes (a converged controller, a saturated population) it would loop forever, so after
``max_repeats`` cached answers in a row the wrapper hands out a fresh genotype instead: an unevaluated one-decision
neighbour of the best result so far, else an unevaluated random genotype. The search ends when the budget is spent or
the space is exhausted.

Sequential use: ``g = search.next()``; evaluate; ``search.record(g, metrics)``; repeat until ``next()`` is None.
Checkpoint with ``state_dict()`` after ``record`` (the pending proposals are not part of the state).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from compiler.ir.space import Genotype
from search.strategies.base import Strategy

MAX_ENUMERATED = 1 << 20      # enumerate the unevaluated genotypes only of spaces this small
RANDOM_TRIES = 1000           # rejection-sampling tries before enumerating


@dataclass
class Record:
    genotype: Genotype
    metrics: dict[str, Any]


class SpaceExhausted(RuntimeError):
    pass


class BudgetedSearch:
    def __init__(self, strategy: Strategy, budget: int | None = None, seed: int = 0, max_repeats: int = 100) -> None:
        if budget is not None and budget < 0:
            raise ValueError(f"budget must be >= 0, not {budget}")
        if max_repeats < 1:
            raise ValueError(f"max_repeats must be >= 1, not {max_repeats}")
        self.strategy = strategy
        self.budget = budget
        self.max_repeats = max_repeats
        self.rng = np.random.default_rng([seed, 0xB0D6E7])  # its own stream: the strategy's stays untouched
        self.cache: dict[Genotype, dict[str, Any]] = {}
        self.pending: set[Genotype] = set()
        self.repeats = 0       # cached answers given since the last fresh proposal (for the report)
        self.fallbacks = 0     # fresh genotypes injected by the guard

    @property
    def spent(self) -> int:
        return len(self.cache)

    @property
    def exhausted(self) -> bool:
        return len(self.cache) + len(self.pending) >= self.strategy.space.size

    def done(self) -> bool:
        return (self.budget is not None and self.spent + len(self.pending) >= self.budget) or self.exhausted

    def next(self) -> Genotype | None:
        """The next genotype to evaluate (never one evaluated or pending), or None when the search is over."""
        if self.done():
            return None
        for _ in range(self.max_repeats):
            genotype = self.strategy.space.check_genotype(self.strategy.ask())
            if genotype in self.cache:
                self.repeats += 1
                self.strategy.tell(genotype, self.cache[genotype])  # free: the result is known
            elif genotype not in self.pending:
                self.pending.add(genotype)
                return genotype
        self.fallbacks += 1
        genotype = self._fresh()
        self.pending.add(genotype)
        return genotype

    def record(self, genotype: Genotype, metrics: Mapping[str, Any]) -> None:
        """Store and charge one evaluation, then tell the strategy."""
        genotype = self.strategy.space.check_genotype(genotype)
        if genotype in self.cache:
            raise ValueError(f"genotype {genotype} was already evaluated in this run")
        self.pending.discard(genotype)
        self.cache[genotype] = dict(metrics)
        self.strategy.tell(genotype, self.cache[genotype])

    def _unseen(self, genotype: Genotype) -> bool:
        return genotype not in self.cache and genotype not in self.pending

    def _fresh(self) -> Genotype:
        space = self.strategy.space
        if self.strategy.best is not None:
            around = [g for g in space.neighbours(self.strategy.best[0]) if self._unseen(g)]
            if around:
                return around[int(self.rng.integers(len(around)))]
        for _ in range(RANDOM_TRIES):
            genotype = space.random_genotype(self.rng)
            if self._unseen(genotype):
                return genotype
        if space.size > MAX_ENUMERATED:
            raise SpaceExhausted(f"no unevaluated genotype found in {RANDOM_TRIES} random draws")
        unseen = [g for g in space.genotypes() if self._unseen(g)]
        if not unseen:
            raise SpaceExhausted("every genotype of the space has been evaluated")
        return unseen[int(self.rng.integers(len(unseen)))]

    def state_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy.state_dict(), "rng": self.rng.bit_generator.state,
                "cache": [[list(g), m] for g, m in self.cache.items()],
                "repeats": self.repeats, "fallbacks": self.fallbacks}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.strategy.load_state_dict(state["strategy"])
        self.rng.bit_generator.state = state["rng"]
        self.cache = {tuple(int(v) for v in g): dict(m) for g, m in state["cache"]}
        self.pending = set()
        self.repeats = int(state["repeats"])
        self.fallbacks = int(state["fallbacks"])


def run_search(strategy: Strategy, evaluate: Callable[[Genotype], Mapping[str, Any]], budget: int,
               seed: int = 0, max_repeats: int = 100) -> list[Record]:
    """Sequential search: evaluate up to ``budget`` distinct genotypes; returns them in evaluation order."""
    search = BudgetedSearch(strategy, budget, seed=seed, max_repeats=max_repeats)
    history: list[Record] = []
    while (genotype := search.next()) is not None:
        metrics = dict(evaluate(genotype))
        search.record(genotype, metrics)
        history.append(Record(genotype, metrics))
    return history
