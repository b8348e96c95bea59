"""Objectives, constraints and Pareto utilities.

Convention: every objective is turned into a value to *maximise* (``Objective.signed``), so dominance, sorting and
fitness all read "larger is better". A candidate is ranked in tiers: evaluated and feasible, evaluated but breaking a
hard constraint (less violation is better), failed (exception, NaN, out of memory, ...) — always the worst.

Several objectives reach every strategy in one of two ways, chosen by the objective config's ``scalarize``:

* ``ranked`` (the default): Pareto ranking. A group of results (a population, the results so far) is ordered by
  non-dominated front, then crowding distance (NSGA-II's order; ``ObjectiveSet.rank_keys``); "a is better than b"
  means a dominates b (``ObjectiveSet.better``). A result's own ``Fitness`` is its primary objective with the
  others as tie-breakers, in order — the lexicographic order, whose maximum is always on the Pareto front.
* ``weighted``: one number, ``sum(weight_i * signed value_i)`` (each objective's ``weight``, default 1; choose
  them for the scales, e.g. ``{name: params, direction: min, weight: 1.0e-6}``: 1e-6 accuracy per parameter).

The best result of a run (``best_of``) is taken on the Pareto front: the largest ``Fitness`` there, i.e. the best
primary objective with ties broken by the other objectives in order (``ranked``), or the best weighted sum.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np

from compiler.errors import ArchError, Span

Direction = Literal["max", "min"]
SCALARIZE = ("ranked", "weighted")
OK = "ok"
INFEASIBLE_STATUS = "infeasible"  # not trained: its cost metrics already broke a hard constraint

FAILED, INFEASIBLE, FEASIBLE = 0, 1, 2  # fitness tiers, worst first


class Fitness(tuple):
    """A result's fitness: the tuple ``(tier, value, *point)``, compared as a tuple (tier first; larger is better).

    ``value``: the primary objective (or the weighted sum). ``point``: with several ranked objectives, all of them
    signed, in order — the tie-breakers, and what Pareto ranking reads; empty otherwise (and for results that are
    not feasible), so a fitness of one objective is the plain pair ``(tier, value)``. JSON-able as a list."""

    __slots__ = ()

    def __new__(cls, tier: int, value: float, point: Sequence[float] = ()) -> "Fitness":
        return super().__new__(cls, (int(tier), float(value), *(float(v) for v in point)))

    def __getnewargs__(self) -> tuple[Any, ...]:  # pickle: rebuild through __new__'s signature
        return self.tier, self.value, self.point

    def __repr__(self) -> str:
        return f"Fitness(tier={self.tier}, value={self.value!r}" + (f", point={self.point!r})" if self.point else ")")

    @property
    def tier(self) -> int:
        return self[0]

    @property
    def value(self) -> float:
        return self[1]

    @property
    def point(self) -> tuple[float, ...]:
        return tuple(self[2:])

    def to_json(self) -> list[float]:
        return list(self)

    @classmethod
    def from_json(cls, data: Sequence[float]) -> "Fitness":
        return cls(data[0], data[1], data[2:])


@dataclass(frozen=True)
class Objective:
    name: str
    direction: Direction = "max"
    weight: float = 1.0  # only read with scalarize: weighted

    def __post_init__(self) -> None:
        if self.direction not in ("max", "min"):
            raise ValueError(f"objective {self.name!r}: direction must be 'max' or 'min', not {self.direction!r}")
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise ValueError(f"objective {self.name!r}: weight must be a positive number, not {self.weight!r}")

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
            unknown = set(spec) - {"name", "direction", "weight"}
            if unknown:
                raise ValueError(f"objective {dict(spec)}: unknown key(s) {sorted(unknown)}; "
                                 "an objective has name, direction (max|min) and weight")
            return cls(str(spec["name"]), spec.get("direction", "max"), float(spec.get("weight", 1.0)))
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
    """What a search optimises: objectives (the first is the primary one), constraints, and how several objectives
    are combined (``scalarize``, see the module docstring)."""

    objectives: tuple[Objective, ...] = (Objective("accuracy", "max"),)
    constraints: tuple[Constraint, ...] = field(default=())
    scalarize: str = "ranked"

    def __post_init__(self) -> None:
        if not self.objectives:
            raise ValueError("at least one objective is needed")
        if self.scalarize not in SCALARIZE:
            raise ValueError(f"scalarize must be one of {', '.join(SCALARIZE)}, not {self.scalarize!r}")
        if self.scalarize == "ranked" and any(o.weight != 1.0 for o in self.objectives):
            raise ValueError("objective weights are only read with scalarize: weighted (ranked compares by Pareto "
                             "dominance); set scalarize: weighted or drop the weights")

    @property
    def primary(self) -> Objective:
        return self.objectives[0]

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.objectives]

    @property
    def ranked(self) -> bool:
        """Several objectives compared by Pareto dominance (else every comparison is of one number)."""
        return len(self.objectives) > 1 and self.scalarize == "ranked"

    @property
    def weighted(self) -> bool:
        return len(self.objectives) > 1 and self.scalarize == "weighted"

    @classmethod
    def coerce(cls, spec: Any = None) -> "ObjectiveSet":
        """Accept None (maximise accuracy), an ObjectiveSet, a mapping with ``objectives``/``constraints``/
        ``scalarize`` (the objective config), one objective spec, or a list of objective specs (see
        :meth:`Objective.parse`). A mistake in the config is an ArchError located at ``objective``."""
        if spec is None:
            return cls()
        if isinstance(spec, ObjectiveSet):
            return spec
        try:
            if isinstance(spec, Mapping) and "objectives" in spec:
                unknown = set(spec) - {"objectives", "constraints", "scalarize"}
                if unknown:
                    raise ValueError(f"unknown key(s) {sorted(unknown)}; the objective config has objectives, "
                                     "constraints and scalarize")
                objectives = spec["objectives"]
                objectives = [objectives] if isinstance(objectives, (str, Mapping)) else objectives
                return cls(tuple(Objective.parse(o) for o in objectives),
                           tuple(Constraint.parse(c) for c in (spec.get("constraints") or ())),
                           str(spec.get("scalarize") or "ranked"))
            if isinstance(spec, (str, Mapping, Objective)):
                return cls((Objective.parse(spec),))
            return cls(tuple(Objective.parse(o) for o in spec))
        except (ValueError, KeyError, TypeError) as err:
            raise ArchError(f"bad objective config: {err}", Span("objective", 0, 0),
                            hint="see conf/objective/*.yaml, e.g. objective=acc_params") from err

    def check_reported(self, reported: Mapping[str, Sequence[str]]) -> None:
        """Refuse, before any candidate is evaluated, an objective or constraint naming a metric that no part of the
        run reports (``reported``: the metric names by where they come from, e.g. cost, profile, evaluator)."""
        available = {name for names in reported.values() for name in names}
        missing = [f"{o.name!r} (objective)" for o in self.objectives if o.name not in available]
        missing += [f"{c.name!r} (constraint {c})" for c in self.constraints if c.name not in available]
        if missing:
            listed = "; ".join(f"{where}: {', '.join(names)}" for where, names in reported.items() if names)
            raise ArchError(f"no part of this run reports {' or '.join(missing)}; the metrics it reports are "
                            f"{listed}", Span("objective", 0, 0),
                            hint="name one of those, or pick an evaluator or profile that reports it "
                                 "(accuracy: evaluator=train or evaluator=table; latency_ms: profile=cpu)")

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

    def scalar(self, metrics: Mapping[str, Any]) -> float:
        """One number to maximise (evaluated metrics only): the weighted sum, or the primary objective."""
        if self.weighted:
            return sum(o.weight * o.signed(metrics[o.name]) for o in self.objectives)
        return self.primary.signed(metrics[self.primary.name])

    def fitness(self, metrics: Mapping[str, Any]) -> Fitness:
        """Tiered fitness (larger is better). A candidate skipped for breaking a constraint before training ranks
        with the infeasible ones, by its violation."""
        if status_of(metrics) == INFEASIBLE_STATUS:
            return Fitness(INFEASIBLE, -float(metrics["violation"]))
        if not self.evaluated(metrics):
            return Fitness(FAILED, 0.0)
        violation = self.violation(metrics)
        if violation > 0:
            return Fitness(INFEASIBLE, -violation)
        return Fitness(FEASIBLE, self.scalar(metrics), self.vector(metrics) if self.ranked else ())

    def vector(self, metrics: Mapping[str, Any]) -> tuple[float, ...]:
        """All objectives, signed to maximise (only for evaluated metrics)."""
        return tuple(o.signed(metrics[o.name]) for o in self.objectives)

    def better(self, a: Fitness, b: Fitness) -> bool:
        """a is strictly better than b: by tier, then (ranked) Pareto dominance or (else) the scalar."""
        if self.ranked and a.tier == b.tier == FEASIBLE:
            return dominates(a.point, b.point)
        return a > b

    def rank_keys(self, fitnesses: Sequence[Fitness]) -> list[Any]:
        """Sort keys that order a group of results best-last (``max`` picks the best). One number: the fitnesses
        themselves. Ranked: tier, then non-dominated front within the group, then crowding distance (NSGA-II)."""
        if not self.ranked:
            return list(fitnesses)
        feasible = [i for i, f in enumerate(fitnesses) if f.tier == FEASIBLE]
        points = [fitnesses[i].point for i in feasible]
        keys: list[Any] = [(f.tier, 0, 0.0, f) for f in fitnesses]
        for rank, front in enumerate(non_dominated_sort(points)):
            crowd = crowding_distance(points, front)
            for j in front:
                keys[feasible[j]] = (FEASIBLE, -rank, crowd[j], fitnesses[feasible[j]])
        return keys

    def share_beaten(self, fitness: Fitness, group: Sequence[Fitness]) -> float:
        """The share of the other members of ``group`` (which holds ``fitness`` once) that ``fitness`` is better
        than, counting ties and incomparable ones as half: the mid-rank in [0, 1] for one number."""
        if len(group) < 2:
            return 0.5
        wins = sum(self.better(fitness, other) for other in group)
        losses = sum(self.better(other, fitness) for other in group)
        ties = len(group) - wins - losses - 1  # the member itself is not an opponent
        return (wins + ties / 2) / (len(group) - 1)

    def best_of(self, records: Sequence[Mapping[str, Any]]) -> int | None:
        """Index of the best of ``records`` (metrics mappings): on the Pareto front, the largest fitness (best
        primary objective, ties broken by the others in order; or the best weighted sum), then the earliest."""
        front = pareto_indices(records, self)
        return max(front, key=lambda i: (self.fitness(records[i]), -i)) if front else None


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """a Pareto-dominates b (maximisation): no worse everywhere, better somewhere."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


BLOCK = 512  # rows of the dominance matrix built at once (bounds the temporary arrays)


def _dominance(points: np.ndarray, rows: slice) -> np.ndarray:
    """``out[i, j]``: point ``rows.start + i`` dominates point j (maximisation)."""
    block = points[rows, None, :]
    return (block >= points[None, :, :]).all(-1) & (block > points[None, :, :]).any(-1)


def non_dominated_sort(points: Sequence[Sequence[float]]) -> list[list[int]]:
    """Fronts of indices (each ascending), best first: Deb et al.'s non-dominated sort, maximisation."""
    n = len(points)
    if n == 0:
        return []
    array = np.asarray(points, dtype=float).reshape(n, -1)
    dominates_matrix = np.concatenate([_dominance(array, slice(i, i + BLOCK)) for i in range(0, n, BLOCK)])
    count = dominates_matrix.sum(0)  # how many points dominate each one
    fronts = []
    current = np.flatnonzero(count == 0)
    while current.size:
        fronts.append(current.tolist())
        count[current] = -1  # placed
        count -= dominates_matrix[current].sum(0)
        current = np.flatnonzero(count == 0)
    return fronts


def first_front(points: Sequence[Sequence[float]]) -> list[int]:
    """The non-dominated points' indices (ascending), in O(n) memory."""
    n = len(points)
    if n == 0:
        return []
    array = np.asarray(points, dtype=float).reshape(n, -1)
    dominated = np.zeros(n, dtype=bool)
    for i in range(0, n, BLOCK):
        dominated |= _dominance(array, slice(i, i + BLOCK)).any(0)
    return np.flatnonzero(~dominated).tolist()


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
    return [usable[i] for i in first_front([objectives.vector(records[i]) for i in usable])]


def hypervolume_2d(points: Iterable[Sequence[float]], reference: Sequence[float]) -> float:
    """Area dominated by ``points`` (two objectives, maximisation) and bounded below by ``reference``."""
    kept = sorted((p[0], p[1]) for p in points if p[0] > reference[0] and p[1] > reference[1])
    area, best_y = 0.0, reference[1]
    for x, y in reversed(kept):  # sweep from the largest first objective down
        if y > best_y:
            area += (x - reference[0]) * (y - best_y)
            best_y = y
    return area
