"""A tiny surrogate for guiding strategies: ridge regression of fitness *ranks* on one-hot decisions.

Ranks make it indifferent to the metric's scale and to failed candidates (they simply rank last), so the same
setting works on any table or objective. It is cheap (a few dozen features) and only ever used to *order*
candidates, never to skip evaluating them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from search.objectives import Fitness
from compiler.ir.space import Genotype


def fitness_ranks(fitnesses: Sequence[Fitness] | Sequence[Any]) -> np.ndarray:
    """Ranks in [0, 1] (ties share their mean rank), 1 = best, of any comparable keys (fitnesses, or
    ``ObjectiveSet.rank_keys``)."""
    n = len(fitnesses)
    if n == 1:
        return np.full(1, 0.5)
    order = sorted(range(n), key=lambda i: fitnesses[i])
    ranks = np.empty(n)
    start = 0
    while start < n:  # give each run of equal fitnesses its average position
        stop = start
        while stop + 1 < n and fitnesses[order[stop + 1]] == fitnesses[order[start]]:
            stop += 1
        for k in range(start, stop + 1):
            ranks[order[k]] = (start + stop) / 2
        start = stop + 1
    return ranks / (n - 1)


def one_hot(cards: Sequence[int], genotypes: Sequence[Genotype]) -> np.ndarray:
    offsets = np.concatenate(([0], np.cumsum(cards)[:-1]))
    features = np.zeros((len(genotypes), int(sum(cards))))
    if genotypes:
        columns = np.asarray(genotypes, dtype=int) + offsets
        features[np.arange(len(genotypes))[:, None], columns] = 1.0
    return features


@dataclass(frozen=True)
class AdditiveModel:
    cards: tuple[int, ...]
    weights: np.ndarray
    bias: float

    @classmethod
    def fit(cls, cards: Sequence[int], known: Mapping[Genotype, Any], ridge: float = 1.0) -> "AdditiveModel":
        """``known``: genotype -> a comparable score (a Fitness or a rank key); only their order matters."""
        cards = tuple(cards)
        genotypes = list(known)
        if len(genotypes) < 2:
            return cls(cards, np.zeros(sum(cards)), 0.5)
        y = fitness_ranks([known[g] for g in genotypes])
        x = one_hot(cards, genotypes)
        bias = float(y.mean())
        weights = np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ (y - bias))
        return cls(cards, weights, bias)

    def predict(self, genotypes: Sequence[Genotype]) -> np.ndarray:
        return self.bias + one_hot(self.cards, genotypes) @ self.weights
