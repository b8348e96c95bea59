"""The search space: an ordered list of Decisions; a *genotype* holds one option index per decision, in order.

This is the one Space type. Every strategy speaks only the genotype encoding (the helpers below: check, size,
random, neighbours, mutate, rank, labels). A space made from an .arch file (``compiler.space.load_space``) also
holds its *program*, the checked AST, source text, model parameters and compile options, with the site table
the expander's chooser reads, and the compiler (injected there) that turns a genotype into IR and code; a bare
one, ``Space.of(decisions)``, serves tabular benchmarks and tests. Sites are keyed by stable choice-site ids (the
parser numbers the choices), never by object ids, so a Space pickles: parallel workers receive it whole.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Protocol, Sequence

from compiler.errors import UNKNOWN_SPAN, ArchError, Span
from compiler.ir.graph import Graph

if TYPE_CHECKING:
    import numpy as np

Genotype = tuple[int, ...]
KINDS = ("layer", "value", "depth", "input")   # which op or block, a value, a repeat count, which inputs
CACHED_RESULTS = 8   # compiled genotypes kept: a search compiles one candidate for its costs, evaluator and report


@dataclass(frozen=True)
class Decision:
    """One choice point: its name, its options (printable labels, as written in the file) and its kind."""

    name: str                         # the label, or "<definition>.<value>" from where it stands
    options: tuple[str, ...]
    kind: str = "layer"               # one of KINDS
    span: Span = field(compare=False, default=UNKNOWN_SPAN)

    def __post_init__(self) -> None:
        if not self.options:
            raise ValueError(f"decision {self.name!r} has no options")
        if self.kind not in KINDS:
            raise ValueError(f"decision {self.name!r}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        object.__setattr__(self, "options", tuple(str(o) for o in self.options))


class SpaceCompiler(Protocol):
    """What turns a genotype of a space with a program into IR and code (``compiler.space`` provides it)."""

    def concretize(self, space: "Space", genotype: Genotype) -> Graph: ...

    def compile(self, space: "Space", genotype: Genotype) -> Any: ...


@dataclass(eq=False)
class Space:
    decisions: tuple[Decision, ...]
    name: str = "space"
    sites: Mapping[tuple[str, int], int] = field(default_factory=dict)  # (namespace, choice site id) -> decision
    module: Any = None                  # the checked AST (compiler.frontend.ast.Module); None: a bare space
    source: str | None = None           # its text
    params: Mapping[str, Any] = field(default_factory=dict)   # model parameter overrides
    options: Any = None                 # compiler.api.CompileOptions
    compiler: SpaceCompiler | None = field(default=None, repr=False)
    _compiled: dict[Genotype, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, decisions: Sequence[Decision], name: str = "space") -> "Space":
        """A bare space: decisions only (a tabular benchmark's, a test's); it has no program to compile."""
        return cls(tuple(decisions), name)

    @classmethod
    def from_sizes(cls, *sizes: int) -> "Space":
        """A bare space of decisions ``d0, d1, ...`` with ``sizes[i]`` options labelled 0, 1, ..."""
        return cls.of([Decision(f"d{i}", tuple(range(n))) for i, n in enumerate(sizes)])

    # ---- the genotype encoding ---------------------------------------------------------------------
    @property
    def cardinalities(self) -> tuple[int, ...]:
        return tuple(len(d.options) for d in self.decisions)

    @property
    def size(self) -> int:
        """Number of distinct genotypes."""
        return math.prod(self.cardinalities)

    def check_genotype(self, genotype: Sequence[int]) -> Genotype:
        """``genotype`` as a tuple of ints, or a ValueError saying which decision is out of range."""
        values = tuple(int(v) for v in genotype)
        if len(values) != len(self.decisions):
            raise ValueError(f"genotype {values} has {len(values)} entries; the space has {len(self.decisions)} "
                             f"decisions")
        for decision, value in zip(self.decisions, values):
            if not 0 <= value < len(decision.options):
                raise ValueError(f"genotype {values}: decision '{decision.name}' has {len(decision.options)} "
                                 f"options, got index {value}")
        return values

    @property
    def default_genotype(self) -> Genotype:
        """Every decision at its first option: the network the space is written around (airbench.arch: airbench94)."""
        return (0,) * len(self.decisions)

    def random_genotype(self, rng: "np.random.Generator") -> Genotype:
        return tuple(int(rng.integers(n)) for n in self.cardinalities)

    def neighbours(self, genotype: Genotype) -> list[Genotype]:
        """Every genotype that differs from ``genotype`` in exactly one decision, in decision/option order."""
        out = []
        for i, n in enumerate(self.cardinalities):
            for value in range(n):
                if value != genotype[i]:
                    out.append(genotype[:i] + (value,) + genotype[i + 1:])
        return out

    def mutate(self, genotype: Genotype, rng: "np.random.Generator") -> Genotype:
        """Change one decision (chosen among those with a choice) to a different option, uniformly."""
        sizes = self.cardinalities
        free = [i for i, n in enumerate(sizes) if n > 1]
        if not free:
            return genotype
        i = free[int(rng.integers(len(free)))]
        value = int(rng.integers(sizes[i] - 1))
        value += value >= genotype[i]  # skip the current option
        return genotype[:i] + (value,) + genotype[i + 1:]

    def index_of(self, genotype: Genotype) -> int:
        """The genotype's rank in mixed radix (first decision most significant); a dense key for small spaces."""
        index = 0
        for value, n in zip(genotype, self.cardinalities):
            index = index * n + value
        return index

    def genotype_at(self, index: int) -> Genotype:
        """Inverse of :meth:`index_of`."""
        values = []
        for n in reversed(self.cardinalities):
            index, value = divmod(index, n)
            values.append(value)
        return tuple(reversed(values))

    def genotypes(self) -> Iterator[Genotype]:
        """Every genotype, in rank order."""
        return itertools.product(*(range(n) for n in self.cardinalities))  # type: ignore[return-value]

    def describe(self, genotype: Sequence[int]) -> dict[str, str]:
        """Readable form: decision name -> chosen option label."""
        g = self.check_genotype(genotype)
        return {d.name: d.options[v] for d, v in zip(self.decisions, g)}

    def signature(self) -> list[list]:
        """Names and option counts: stored in checkpoints so a resume against another space fails clearly."""
        return [[d.name, len(d.options)] for d in self.decisions]

    # ---- the program ---------------------------------------------------------------------------------
    def decision_at(self, namespace: str, site: int) -> int:
        """The decision a choice site takes in ``namespace`` ("" or the "label." of a block instance)."""
        return self.sites[(namespace, site)]

    def concretize(self, genotype: Sequence[int]) -> Graph:
        """The concrete IR of ``genotype`` (the expander taking its choices), before any pass."""
        return self._compiler().concretize(self, self.check_genotype(genotype))

    def compile(self, genotype: Sequence[int]) -> Any:
        """The genotype's ``CompileResult`` (passes and backends); the last few are kept, since a search compiles
        the same candidate for its costs, its evaluator and its report."""
        g = self.check_genotype(genotype)
        if g in self._compiled:
            return self._compiled[g]
        result = self._compiler().compile(self, g)
        self._compiled[g] = result
        while len(self._compiled) > CACHED_RESULTS:
            self._compiled.pop(next(iter(self._compiled)))
        return result

    def validate(self, samples: int = 16, seed: int = 0) -> None:
        """Static check of the space: every option of every decision (others at their first option), plus random
        combinations, must compile; the first failure is reported with the options that caused it."""
        import numpy as np  # only here: the IR needs no numpy to load
        base = [0] * len(self.decisions)
        trials: list[Genotype] = [tuple(base)]
        for i, d in enumerate(self.decisions):
            for v in range(1, len(d.options)):
                trials.append(tuple(base[:i] + [v] + base[i + 1:]))
        rng = np.random.default_rng(seed)
        trials += [self.random_genotype(rng) for _ in range(samples)]
        for g in trials:
            try:
                self.compile(g)
            except ArchError as err:
                chosen = ", ".join(f"{d.name}={d.options[v]}" for d, v in zip(self.decisions, g))
                raise ArchError(err.message, err.span, self.source,
                                f"{err.hint + '; ' if err.hint else ''}with the choices {chosen}",
                                stage="space") from None

    def _compiler(self) -> SpaceCompiler:
        if self.compiler is None:
            raise TypeError(f"the space '{self.name}' has decisions only (Space.of): it has no program to compile")
        return self.compiler

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_compiled": {}}   # compiled results hold generated code: rebuilt where needed
