"""Random search: independent uniform genotypes (the baseline every other strategy must beat); warm-started
(``search.warmup``), the proxy's ranking of its pool first."""
from __future__ import annotations

from typing import Any, Mapping

from search.objectives import Fitness
from compiler.ir.space import Genotype
from search.strategies.base import Strategy


class RandomSearch(Strategy):
    def _propose(self) -> Genotype:
        return self._draw()

    def _observe(self, genotype: Genotype, fitness: Fitness, metrics: Mapping[str, Any]) -> None:
        pass  # nothing to learn
