"""The one interface of every search strategy: ask / tell / state_dict / load_state_dict.

* ``ask()`` proposes one genotype, ``ask(n)`` a list (for parallel evaluation);
* ``tell(genotype, metrics)`` reports a result. ``metrics`` holds the objective values and a ``status`` ("ok" or
  any failure status); failed and infeasible candidates rank below every feasible one (see ``Fitness``). With
  several objectives a strategy compares results through its ``ObjectiveSet`` (``rank_keys`` to order a group,
  ``better`` for two, ``share_beaten`` for a rank), never by one objective alone. A
  strategy accepts results for genotypes it did not ask for (the budget wrapper injects fresh genotypes when a
  strategy keeps proposing evaluated ones), and results for the same genotype more than once (cached results);
* ``state_dict()`` is JSON-serialisable and includes the RNG state, so that after ``load_state_dict`` the future
  asks are exactly those of an uninterrupted run.

Subclasses implement ``_propose``, ``_observe`` and (for extra state) ``_state`` / ``_load_state``.

Warm start (``search.warmup``, ``search/warmup.py``): before the first ask, the loop may call ``seed_with(ranked)``
with candidates ranked best first by a zero-cost proxy. By default they take the place of the strategy's random
draws (``_draw``), best first, until they run out: random search becomes "best by proxy first", evolution's and
NSGA-II's initial populations and local search's starts are the proxy's best. A strategy without random draws
overrides ``seed_with`` (REINFORCE learns the pool's ranking first). The seeds not yet used are part of the state.

Zero-cost move proposal (``search.warmup.moves``; Abdelfattah et al., ICLR 2021, Sec. 5): the loop may call
``screen_with(screen, moves)``; a strategy that mutates (``screens = True``: evolution, NSGA-II) then draws up to
``moves`` distinct mutations of a parent that it has neither proposed nor been told, and proposes the one the
``screen`` (a proxy) scores highest, the first drawn among equals (``_mutate``). With ``moves`` 1 ``_mutate`` is
``space.mutate``, draw for draw. The genotypes proposed or told are then part of the state.

One-shot strategies (DARTS), whose candidates come from a search phase over a supernet, build on ``OneShotStrategy``
(``one_shot.py``).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar, Mapping, Sequence, overload

import numpy as np

from compiler.ir.space import Genotype, Space
from search.objectives import Fitness, ObjectiveSet


Screen = Callable[[Sequence[Genotype]], Sequence[float]]   # candidates -> one score each, higher is better
DRAWS_PER_MOVE = 8   # mutations drawn per wanted child before screening what was found (a parent's few neighbours)


class Strategy(ABC):
    """Base class: holds the space, the objectives and a seeded numpy Generator (the only randomness)."""

    screens: ClassVar[bool] = False   # whether its proposals go through ``_mutate`` (so ``screen_with`` acts)
    draws: ClassVar[bool] = True      # whether it draws candidates at random (``_draw``), which ``start_with`` replaces

    def __init__(self, space: Space, seed: int = 0, objectives: Any = None) -> None:
        self.space = space
        self.objectives = ObjectiveSet.coerce(objectives)
        self.rng = np.random.default_rng(seed)
        self.best: tuple[Genotype, Fitness] | None = None  # best result told so far
        self.seeds: list[Genotype] = []  # warm start: candidates ranked best first, used in place of random draws
        self.screen: Screen | None = None  # move proposal: scores a parent's mutations (``screen_with``)
        self.moves = 1
        self.tried: set[Genotype] = set()  # with a screen: proposed or told, so never screened again

    def seed_with(self, ranked: Sequence[Sequence[int]]) -> None:
        """Warm start with ``ranked`` (best first by a cheap proxy), before any ask; see the module docstring."""
        self.seeds = [self.space.check_genotype(g) for g in ranked]

    def start_with(self, first: Sequence[Sequence[int]]) -> None:
        """Propose ``first`` before anything else, in place of the first random draws and ahead of a warm start's
        seeds (``search.include_default``: the space's default network is in the initial population)."""
        if not self.draws:
            raise ValueError(f"{type(self).__name__} draws no candidates at random to start from")
        first = [self.space.check_genotype(g) for g in first]
        self.seeds = first + [g for g in self.seeds if g not in first]

    def screen_with(self, screen: Screen, moves: int) -> None:
        """Propose the best of ``moves`` distinct untried mutations by ``screen``; see the module docstring."""
        if moves < 1:
            raise ValueError(f"moves must be >= 1, not {moves}")
        if moves > 1 and not self.screens:
            raise ValueError(f"{type(self).__name__} proposes no mutations to screen")
        self.screen, self.moves = (screen, moves) if moves > 1 else (None, 1)

    def _mutate(self, parent: Genotype) -> Genotype:
        """A one-decision mutation of ``parent``: the screen's best of up to ``moves`` distinct untried ones."""
        if self.screen is None:
            return self.space.mutate(parent, self.rng)
        wanted = min(self.moves, sum(n - 1 for n in self.space.cardinalities))   # at most every neighbour
        children: list[Genotype] = []
        child = parent
        for _ in range(wanted * DRAWS_PER_MOVE):
            child = self.space.mutate(parent, self.rng)
            if child not in self.tried and child not in children:
                children.append(child)
                if len(children) == wanted:
                    break
        if children:   # else every mutation drawn was tried: the last one, answered from the cache for free
            scores = list(self.screen(children))
            child = children[max(range(len(children)), key=scores.__getitem__)]   # the first of equals
        self.tried.add(child)
        return child

    def _draw(self) -> Genotype:
        """A genotype where the strategy would draw one at random: the next warm-start seed while any are left."""
        if self.seeds:
            return self.seeds.pop(0)
        return self.space.random_genotype(self.rng)

    @overload
    def ask(self) -> Genotype: ...

    @overload
    def ask(self, n: int) -> list[Genotype]: ...

    def ask(self, n: int | None = None) -> Genotype | list[Genotype]:
        if n is None:
            return self._propose()
        return [self._propose() for _ in range(n)]

    def tell(self, genotype: Sequence[int], metrics: Mapping[str, Any]) -> None:
        genotype = self.space.check_genotype(genotype)
        fitness = self.objectives.fitness(metrics)
        if self.screen is not None:
            self.tried.add(genotype)
        if self.best is None or fitness > self.best[1]:
            self.best = (genotype, fitness)
        self._observe(genotype, fitness, metrics)

    def state_dict(self) -> dict[str, Any]:
        tried = {"tried": [list(g) for g in sorted(self.tried)]} if self.screen is not None else {}
        return {"strategy": type(self).__name__, "space": self.space.signature(),
                "rng": self.rng.bit_generator.state,
                "best": None if self.best is None else [list(self.best[0]), self.best[1].to_json()],
                "seeds": [list(g) for g in self.seeds], **tried, **self._state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("strategy") != type(self).__name__:
            raise ValueError(f"this checkpoint belongs to strategy {state.get('strategy')!r}, "
                             f"not {type(self).__name__!r}: resume with the same search config")
        if [list(x) for x in state["space"]] != self.space.signature():
            raise ValueError("this checkpoint was written for another search space (its decisions differ): "
                             "resume with the same space config")
        self.rng.bit_generator.state = state["rng"]
        best = state.get("best")
        self.best = None if best is None else (tuple(best[0]), Fitness.from_json(best[1]))
        self.seeds = [tuple(int(v) for v in g) for g in state.get("seeds", [])]
        self.tried = {tuple(int(v) for v in g) for g in state.get("tried", [])}
        self._load_state(state)

    def candidate_metrics(self, genotype: Sequence[int]) -> dict[str, Any]:
        """What the strategy itself measured of a candidate it proposed, added to its record by the loop (a one-shot
        strategy: its supernet's figures); {} for a strategy that samples."""
        return {}

    def report_notes(self) -> list[str]:
        """Markdown lines the strategy adds to report.md (DARTS: its supernet, the weights it learnt, warnings)."""
        return []

    @abstractmethod
    def _propose(self) -> Genotype:
        """The next genotype to evaluate."""

    @abstractmethod
    def _observe(self, genotype: Genotype, fitness: Fitness, metrics: Mapping[str, Any]) -> None:
        """Learn from one result (``fitness``: ``self.objectives.fitness(metrics)``)."""

    def _state(self) -> dict[str, Any]:
        return {}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        pass


def encode_pairs(pairs: Sequence[tuple[Genotype, Fitness]]) -> list[list]:
    """(genotype, fitness) pairs as JSON lists."""
    return [[list(g), f.to_json()] for g, f in pairs]


def decode_pairs(data: Sequence[Sequence]) -> list[tuple[Genotype, Fitness]]:
    return [(tuple(int(v) for v in g), Fitness.from_json(f)) for g, f in data]
