"""NSGA-II (Deb et al. 2002): multi-objective evolution by non-dominated sorting and crowding distance.

Generational: once ``population_size`` results are in, every proposal is a child of two parents picked by binary
tournament (lower front first, then larger crowding distance), uniform crossover with probability ``crossover``,
then a one-decision mutation. When a generation's worth of children has been told, parents and children are
merged and the best ``population_size`` survive. Constraints follow Deb's constrained domination: feasible beats
infeasible, infeasible ones rank by total violation, failed candidates rank last. With ``scalarize: weighted`` the
weighted sum is the one objective it sorts by (a genetic algorithm on that number).
With ``search.warmup.moves`` M > 1 the mutation is the zero-cost proxy's best of M (``Strategy.screen_with``); the
proxies estimate accuracy, so with several objectives this leans the children towards the accurate end of the front.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from search.objectives import FEASIBLE, INFEASIBLE, Fitness, crowding_distance, non_dominated_sort
from compiler.ir.space import Genotype
from search.strategies.base import Strategy


@dataclass(frozen=True)
class Member:
    genotype: Genotype
    tier: int
    violation: float
    point: tuple[float, ...]  # objectives signed to maximise (or the weighted sum); empty unless feasible

    def to_json(self) -> list:
        return [list(self.genotype), self.tier, self.violation, list(self.point)]

    @classmethod
    def from_json(cls, data: Sequence) -> "Member":
        return cls(tuple(int(v) for v in data[0]), int(data[1]), float(data[2]), tuple(float(v) for v in data[3]))


def rank_and_crowd(members: Sequence[Member]) -> list[tuple[int, float]]:
    """(rank, crowding) per member: lower rank is better, then larger crowding."""
    feasible = [i for i, m in enumerate(members) if m.tier == FEASIBLE]
    result: list[tuple[int, float]] = [(0, 0.0)] * len(members)
    points = [members[i].point for i in feasible]
    fronts = non_dominated_sort(points)
    for rank, front in enumerate(fronts):
        crowd = crowding_distance(points, front)
        for j in front:
            result[feasible[j]] = (rank, crowd[j])
    infeasible = sorted({m.violation for m in members if m.tier == INFEASIBLE})
    for i, m in enumerate(members):
        if m.tier == INFEASIBLE:
            result[i] = (len(fronts) + infeasible.index(m.violation), 0.0)
        elif m.tier != FEASIBLE:
            result[i] = (len(fronts) + len(infeasible), 0.0)
    return result


class NSGA2(Strategy):
    screens = True   # search.warmup.moves: the mutation is the proxy's best of several (see the module docstring)

    def __init__(self, space: Any, seed: int = 0, objectives: Any = None, population_size: int = 20,
                 crossover: float = 0.5) -> None:
        super().__init__(space, seed, objectives)
        if population_size < 2:
            raise ValueError(f"population_size must be >= 2, not {population_size}")
        if not 0 <= crossover <= 1:
            raise ValueError(f"crossover must be a probability, not {crossover}")
        self.population_size = population_size
        self.crossover = crossover
        self.population: list[Member] = []
        self.offspring: list[Member] = []
        self._scores: list[tuple[int, float]] | None = None  # cache of rank_and_crowd(population)

    def _propose(self) -> Genotype:
        if len(self.population) < self.population_size:
            return self._draw()
        first, second = self._tournament(), self._tournament()
        child = first.genotype
        if self.rng.random() < self.crossover:
            take = self.rng.random(len(child)) < 0.5
            child = tuple(a if t else b for a, b, t in zip(first.genotype, second.genotype, take))
        return self._mutate(child)

    def _tournament(self) -> Member:
        if self._scores is None:
            self._scores = rank_and_crowd(self.population)
        i, j = (int(k) for k in self.rng.integers(len(self.population), size=2))
        (rank_i, crowd_i), (rank_j, crowd_j) = self._scores[i], self._scores[j]
        return self.population[i] if (rank_i, -crowd_i) <= (rank_j, -crowd_j) else self.population[j]

    def _observe(self, genotype: Genotype, fitness: Fitness, metrics: Mapping[str, Any]) -> None:
        if any(m.genotype == genotype for m in self.population + self.offspring):
            return  # a cached result told again adds nothing new
        violation = -fitness.value if fitness.tier == INFEASIBLE else 0.0
        point = (fitness.point or (fitness.value,)) if fitness.tier == FEASIBLE else ()
        member = Member(genotype, fitness.tier, violation, point)
        if len(self.population) < self.population_size:
            self.population.append(member)
            self._scores = None
            return
        self.offspring.append(member)
        if len(self.offspring) >= self.population_size:
            self._select()

    def _select(self) -> None:
        merged = self.population + self.offspring
        scores = rank_and_crowd(merged)
        order = sorted(range(len(merged)), key=lambda i: (scores[i][0], -scores[i][1]))
        self.population = [merged[i] for i in order[:self.population_size]]
        self.offspring = []
        self._scores = None

    def _state(self) -> dict[str, Any]:
        return {"population": [m.to_json() for m in self.population],
                "offspring": [m.to_json() for m in self.offspring]}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        self.population = [Member.from_json(m) for m in state["population"]]
        self.offspring = [Member.from_json(m) for m in state["offspring"]]
        self._scores = None
