"""The genotype-level view of a search space, shared by every strategy.

A space is an ordered list of Decisions; a *genotype* is a tuple of ints with one option index per decision, in
that order. Strategies only ever see this encoding, so any object with a ``decisions`` attribute whose items have
``name`` and ``options`` satisfies the contract (the compiler's Space does, without importing this package).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Protocol, Sequence

import numpy as np

Genotype = tuple[int, ...]


class DecisionLike(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def options(self) -> Sequence[object]: ...


@dataclass(frozen=True)
class Decision:
    """One choice point: a name and its printable option labels."""

    name: str
    options: tuple

    def __post_init__(self) -> None:
        if not self.options:
            raise ValueError(f"decision {self.name!r} has no options")


class DiscreteSpace(Protocol):
    @property
    def decisions(self) -> Sequence[DecisionLike]: ...


@dataclass(frozen=True)
class SimpleSpace:
    """A plain DiscreteSpace: a tuple of decisions (tests, tabular benchmarks)."""

    decisions: tuple[Decision, ...]

    @classmethod
    def from_sizes(cls, *sizes: int) -> "SimpleSpace":
        return cls(tuple(Decision(f"d{i}", tuple(range(n))) for i, n in enumerate(sizes)))


def cardinalities(space: DiscreteSpace) -> tuple[int, ...]:
    return tuple(len(d.options) for d in space.decisions)


def size(space: DiscreteSpace) -> int:
    """Number of distinct genotypes."""
    return math.prod(cardinalities(space))


def check_genotype(space: DiscreteSpace, genotype: Sequence[int]) -> Genotype:
    """``genotype`` as a tuple of ints, or a ValueError saying which decision is out of range."""
    sizes = cardinalities(space)
    if len(genotype) != len(sizes):
        raise ValueError(f"genotype {tuple(genotype)} has {len(genotype)} entries; the space has "
                         f"{len(sizes)} decisions")
    values = tuple(int(v) for v in genotype)
    for decision, value, n in zip(space.decisions, values, sizes):
        if not 0 <= value < n:
            raise ValueError(f"genotype {values}: option {value} of decision {decision.name!r} is out of "
                             f"range 0..{n - 1}")
    return values


def random_genotype(space: DiscreteSpace, rng: np.random.Generator) -> Genotype:
    return tuple(int(rng.integers(n)) for n in cardinalities(space))


def neighbours(space: DiscreteSpace, genotype: Genotype) -> list[Genotype]:
    """Every genotype that differs from ``genotype`` in exactly one decision, in decision/option order."""
    out = []
    for i, n in enumerate(cardinalities(space)):
        for value in range(n):
            if value != genotype[i]:
                out.append(genotype[:i] + (value,) + genotype[i + 1:])
    return out


def mutate(space: DiscreteSpace, genotype: Genotype, rng: np.random.Generator) -> Genotype:
    """Change one decision (chosen among those with a choice) to a different option, uniformly."""
    sizes = cardinalities(space)
    free = [i for i, n in enumerate(sizes) if n > 1]
    if not free:
        return genotype
    i = free[int(rng.integers(len(free)))]
    value = int(rng.integers(sizes[i] - 1))
    value += value >= genotype[i]  # skip the current option
    return genotype[:i] + (value,) + genotype[i + 1:]


def index_of(space: DiscreteSpace, genotype: Genotype) -> int:
    """The genotype's rank in mixed radix (first decision most significant); a dense key for small spaces."""
    index = 0
    for value, n in zip(genotype, cardinalities(space)):
        index = index * n + value
    return index


def genotype_at(space: DiscreteSpace, index: int) -> Genotype:
    """Inverse of :func:`index_of`."""
    values = []
    for n in reversed(cardinalities(space)):
        index, value = divmod(index, n)
        values.append(value)
    return tuple(reversed(values))


def enumerate_genotypes(space: DiscreteSpace) -> Iterator[Genotype]:
    for index in range(size(space)):
        yield genotype_at(space, index)


def labels(space: DiscreteSpace, genotype: Genotype) -> dict[str, str]:
    """Readable form: decision name -> chosen option label."""
    return {d.name: str(d.options[v]) for d, v in zip(space.decisions, genotype)}


def signature(space: DiscreteSpace) -> list[list]:
    """Names and option counts: stored in checkpoints so a resume against another space fails clearly."""
    return [[d.name, len(d.options)] for d in space.decisions]
