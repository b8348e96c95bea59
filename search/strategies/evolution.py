"""Regularized (aging) evolution, Real et al. 2019, "Regularized Evolution for Image Classifier Architecture
Search": a population of the ``population_size`` most recent results; each child mutates one decision of the best
of ``sample_size`` members drawn at random; the oldest member dies when a child joins. The paper's small setting is
``sample_size=3``; the default 10 (as many draws as members, with replacement) selects harder, which pays off at
budgets of a few dozen to hundreds.
With several ranked objectives the tournament is won by the lowest non-dominated front within the population, then
the largest crowding distance (``ObjectiveSet.rank_keys``).
With ``search.warmup.moves`` M > 1 the child is the zero-cost proxy's best of M distinct mutations of the parent
(Abdelfattah et al., ICLR 2021, Sec. 5; ``Strategy.screen_with``).
"""
from __future__ import annotations

from collections import deque
from typing import Any, Mapping

from search.objectives import Fitness
from compiler.ir.space import Genotype
from search.strategies.base import Strategy, decode_pairs, encode_pairs


class RegularizedEvolution(Strategy):
    screens = True   # search.warmup.moves: each child is the proxy's best of several mutations of the parent

    def __init__(self, space: Any, seed: int = 0, objectives: Any = None, population_size: int = 10,
                 sample_size: int = 10) -> None:
        super().__init__(space, seed, objectives)
        if not 1 <= sample_size <= population_size:
            raise ValueError(f"need 1 <= sample_size ({sample_size}) <= population_size ({population_size})")
        self.population_size = population_size
        self.sample_size = sample_size
        self.population: deque[tuple[Genotype, Fitness]] = deque()

    def _propose(self) -> Genotype:
        if len(self.population) < self.population_size:
            return self._draw()
        picks = self.rng.integers(len(self.population), size=self.sample_size)
        keys = self.objectives.rank_keys([fitness for _, fitness in self.population])
        parent = max((int(i) for i in picks), key=keys.__getitem__)
        return self._mutate(self.population[parent][0])

    def _observe(self, genotype: Genotype, fitness: Fitness, metrics: Mapping[str, Any]) -> None:
        self.population.append((genotype, fitness))
        if len(self.population) > self.population_size:
            self.population.popleft()  # aging: the oldest dies, however good

    def _state(self) -> dict[str, Any]:
        return {"population": encode_pairs(list(self.population))}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        self.population = deque(decode_pairs(state["population"]))
