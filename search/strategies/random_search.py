"""Random search: independent uniform genotypes (the baseline every other strategy must beat)."""
from __future__ import annotations

from typing import Any, Mapping

from search.objectives import Fitness
from search.space import Genotype, random_genotype
from search.strategies.base import Strategy


class RandomSearch(Strategy):
    def _propose(self) -> Genotype:
        return random_genotype(self.space, self.rng)

    def _observe(self, genotype: Genotype, fitness: Fitness, metrics: Mapping[str, Any]) -> None:
        pass  # nothing to learn
