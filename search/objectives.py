"""Objectives, constraints and Pareto utilities.

Convention: every objective is turned into a value to *maximise* (``Objective.signed``), so dominance, sorting and
fitness all read "larger is better". A candidate is ranked in tiers: evaluated and feasible, evaluated but breaking a
hard constraint (less violation is better), failed (exception, NaN, out of memory, ...) — always the worst.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Mapping, NamedTuple, Sequence

Direction = Literal["max", "min"]
OK = "ok"
INFEASIBLE_STATUS = "infeasible"  # not trained: its cost metrics already broke a hard constraint

FAILED, INFEASIBLE, FEASIBLE = 0, 1, 2  # fitness tiers, worst first


class Fitness(NamedTuple):
    """Scalar fitness for single-objective strategies: compare as tuples (tier first). JSON-able as a list."""

    tier: int
    value: float


@dataclass(frozen=True)
class Objective:
    name: str
    direction: Direction = "max"

    def __post_init__(self) -> None:
        if self.direction not in ("max", "min"):
            raise ValueError(f"objective {self.name!r}: direction must be 'max' or 'min', not {self.direction!r}")

    def signed(self, value: float) -> float:
        return float(value) if self.direction == "max" else -float(value)

    @classmethod
    def parse(cls, spec: "Objective | str | Mapping[str, Any]") -> "Objective":
        """``Objective``, ``{"name": .., "direction": ..}``, ``"accuracy"`` (max), ``"max:acc"`` or ``"min:params"``."""
        if isinstance(spec, Objective):
            return spec
        if isinstance(spec, str):
            direction, _, name = spec.rpartition(":")
            return cls(name.strip(), (direction.strip() or "max"))  # type: ignore[arg-type]
        if isinstance(spec, Mapping):
            return cls(str(spec["name"]), spec.get("direction", "max"))
        raise TypeError(f"cannot read an objective from {spec!r}")


_COMPARE = {"<=": lambda v, lim: max(0.0, v - lim), ">=": lambda v, lim: max(0.0, lim - v)}
_CONSTRAINT_RE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(<=|>=)\s*([-+0-9.eE_]+)\s*$")


@dataclass(frozen=True)
class Constraint:
    """A hard limit such as ``params <= 1e6``."""

    name: str
    op: str
    limit: float

    def __post_init__(self) -> None:
        if self.op not in _COMPARE:
            raise ValueError(f"constraint on {self.name!r}: operator must be one of {sorted(_COMPARE)}, "
                             f"not {self.op!r}")

    def violation(self, metrics: Mapping[str, Any]) -> float:
        """0 when satisfied, else the excess relative to |limit| (so constraints of any scale add up)."""
        if self.name not in metrics:
            raise KeyError(f"constraint {self}: the evaluator reported no {self.name!r} "
                           f"(it reported {sorted(metrics)})")
        excess = _COMPARE[self.op](float(metrics[self.name]), self.limit)
        return excess / abs(self.limit) if self.limit else excess

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.limit:g}"

    @classmethod
    def parse(cls, spec: "Constraint | str | Mapping[str, Any]") -> "Constraint":
        """``"params<=1e6"``, ``{"name": "params", "op": "<=", "limit": 1e6}`` or a Constraint."""
        if isinstance(spec, Constraint):
            return spec
        if isinstance(spec, Mapping):
            return cls(str(spec["name"]), str(spec.get("op", "<=")), float(spec["limit"]))
        match = _CONSTRAINT_RE.match(str(spec))
        if not match:
            raise ValueError(f"cannot read constraint {spec!r}: write it as NAME<=LIMIT or NAME>=LIMIT, "
                             f"e.g. params<=1e6")
        return cls(match[1], match[2], float(match[3]))


def status_of(metrics: Mapping[str, Any]) -> str:
    return str(metrics.get("status", OK))


@dataclass(frozen=True)
class ObjectiveSet:
    """What a search optimises. Single-objective strategies use the first objective; nsga2 uses all."""

    objectives: tuple[Objective, ...] = (Objective("accuracy", "max"),)
    constraints: tuple[Constraint, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.objectives:
            raise ValueError("at least one objective is needed")

    @property
    def primary(self) -> Objective:
        return self.objectives[0]

    @classmethod
    def coerce(cls, spec: Any = None) -> "ObjectiveSet":
        """Accept None (maximise accuracy), an ObjectiveSet, a mapping with ``objectives``/``constraints``,
        one objective spec, or a list of objective specs (see :meth:`Objective.parse`)."""
        if spec is None:
            return cls()
        if isinstance(spec, ObjectiveSet):
            return spec
        if isinstance(spec, Mapping) and "objectives" in spec:
            objectives = spec["objectives"]
            objectives = [objectives] if isinstance(objectives, (str, Mapping)) else objectives
            return cls(tuple(Objective.parse(o) for o in objectives),
                       tuple(Constraint.parse(c) for c in (spec.get("constraints") or ())))
        if isinstance(spec, (str, Mapping, Objective)):
            return cls((Objective.parse(spec),))
        return cls(tuple(Objective.parse(o) for o in spec))

    def evaluated(self, metrics: Mapping[str, Any]) -> bool:
        """True when the run succeeded and reported a finite value for every objective."""
        if status_of(metrics) != OK:
            return False
        for objective in self.objectives:
            value = metrics.get(objective.name)
            if value is None or not math.isfinite(float(value)):
                return False
        return True

    def violation(self, metrics: Mapping[str, Any]) -> float:
        return sum(c.violation(metrics) for c in self.constraints)

    def known_violation(self, metrics: Mapping[str, Any]) -> float:
        """The violation of the constraints whose metric is already known (e.g. params before training)."""
        return sum(c.violation(metrics) for c in self.constraints if c.name in metrics)

    def fitness(self, metrics: Mapping[str, Any]) -> Fitness:
        """Tiered scalar fitness of the primary objective (larger is better). A candidate skipped for breaking a
        constraint before training ranks with the infeasible ones, by its violation."""
        if status_of(metrics) == INFEASIBLE_STATUS:
            return Fitness(INFEASIBLE, -float(metrics["violation"]))
        if not self.evaluated(metrics):
            return Fitness(FAILED, 0.0)
        violation = self.violation(metrics)
        if violation > 0:
            return Fitness(INFEASIBLE, -violation)
        return Fitness(FEASIBLE, self.primary.signed(metrics[self.primary.name]))

    def vector(self, metrics: Mapping[str, Any]) -> tuple[float, ...]:
        """All objectives, signed to maximise (only for evaluated metrics)."""
        return tuple(o.signed(metrics[o.name]) for o in self.objectives)


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """a Pareto-dominates b (maximisation): no worse everywhere, better somewhere."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def non_dominated_sort(points: Sequence[Sequence[float]]) -> list[list[int]]:
    """Fronts of indices, best first (Deb et al.'s fast non-dominated sort, maximisation)."""
    n = len(points)
    dominated_by: list[list[int]] = [[] for _ in range(n)]
    count = [0] * n
    for i in range(n):
        for j in range(i + 1, n):
            if dominates(points[i], points[j]):
                dominated_by[i].append(j)
                count[j] += 1
            elif dominates(points[j], points[i]):
                dominated_by[j].append(i)
                count[i] += 1
    fronts = []
    current = [i for i in range(n) if count[i] == 0]
    while current:
        fronts.append(current)
        following = []
        for i in current:
            for j in dominated_by[i]:
                count[j] -= 1
                if count[j] == 0:
                    following.append(j)
        current = sorted(following)
    return fronts


def crowding_distance(points: Sequence[Sequence[float]], front: Sequence[int]) -> dict[int, float]:
    """Crowding distance of each index of one front; boundary points get infinity."""
    distance = {i: 0.0 for i in front}
    if len(front) <= 2:
        return {i: math.inf for i in front}
    for m in range(len(points[front[0]])):
        ordered = sorted(front, key=lambda i: points[i][m])
        low, high = points[ordered[0]][m], points[ordered[-1]][m]
        distance[ordered[0]] = distance[ordered[-1]] = math.inf
        if high == low:
            continue
        for prev, mid, nxt in zip(ordered, ordered[1:], ordered[2:]):
            distance[mid] += (points[nxt][m] - points[prev][m]) / (high - low)
    return distance


def pareto_indices(records: Iterable[Mapping[str, Any]], objectives: ObjectiveSet) -> list[int]:
    """Indices of the feasible, evaluated records that no other such record dominates."""
    records = list(records)
    usable = [i for i, m in enumerate(records)
              if objectives.evaluated(m) and objectives.violation(m) == 0]
    points = [objectives.vector(records[i]) for i in usable]
    fronts = non_dominated_sort(points)
    return sorted(usable[i] for i in fronts[0]) if fronts else []


def hypervolume_2d(points: Iterable[Sequence[float]], reference: Sequence[float]) -> float:
    """Area dominated by ``points`` (two objectives, maximisation) and bounded below by ``reference``."""
    kept = sorted((p[0], p[1]) for p in points if p[0] > reference[0] and p[1] > reference[1])
    area, best_y = 0.0, reference[1]
    for x, y in reversed(kept):  # sweep from the largest first objective down
        if y > best_y:
            area += (x - reference[0]) * (y - best_y)
            best_y = y
    return area
