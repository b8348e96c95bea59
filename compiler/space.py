"""Search spaces: an .arch file with choice points, its ordered Decisions, and ``concretize(genotype)``.

Every ``[a | b | c]`` in the text is a choice point: a layer choice (which op or block), a value choice (a width,
a kernel size), a depth (``block(...) * [1 | 2 | 3]``) or an input choice (``([n0 | n1], n2) -> add``).
Each choice site is one Decision, shared by every instance of the block it sits in (as cells are shared in
DARTS and NAS-Bench-201); sites labelled with the same ``as NAME`` are one decision. Decisions are ordered by
their first appearance in the file. A genotype holds one option index per decision.
"""
from __future__ import annotations

import itertools
import random as _random
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

from compiler.api import CompileOptions, CompileResult, compile_graph, parse_module, read_source, to_graph
from compiler.errors import ArchError, Span
from compiler.frontend import ast
from compiler.ir.graph import Graph
from compiler.limits import DEFAULT_LIMITS, Limits, limit_error

Genotype = tuple[int, ...]


@dataclass(frozen=True)
class Decision:
    name: str                         # the label, or "<definition>.<value>" from where it stands
    options: tuple[str, ...]          # the options as written in the file
    kind: str                         # "layer" | "value" | "depth" | "input"
    span: Span = field(compare=False, default=Span("<unknown>", 0, 0))


def _text(source: str, span: Span) -> str:
    lines = source.splitlines()
    if span.line == span.end_line:
        return lines[span.line - 1][span.column - 1: span.end_column - 1]
    parts = [lines[span.line - 1][span.column - 1:], *lines[span.line: span.end_line - 1],
             lines[span.end_line - 1][: span.end_column - 1]]
    return " ".join(p.strip() for p in parts)


class _Sites:
    """Walk the model and, through block instances, every block it uses, collecting choice sites in source order.

    A site is (namespace, choice node): the namespace is "" for shared choices and "label." inside a block
    instance written `block(...) as label`, so the same site yields one decision per labelled instance.
    """

    def __init__(self, module: ast.Module, limits: Limits = DEFAULT_LIMITS, source: str | None = None) -> None:
        self.limits, self.source = limits, source
        self.blocks = {d.name: d for d in module.definitions if d.kind == "block"}
        self.model = next(d for d in module.definitions if d.kind == "model")
        self.found: list[tuple[str, ast.Choice, str, str]] = []  # (namespace, choice, kind, default name)
        self.seen: set[tuple[str, int]] = set()
        self.walked: set[tuple[str, str]] = set()

    def collect(self) -> list[tuple[str, ast.Choice, str, str]]:
        self.definition(self.model, "")
        return self.found

    def add(self, ns: str, choice: ast.Choice, kind: str, where: str) -> None:
        if (ns, id(choice)) not in self.seen:
            if len(self.found) >= self.limits.max_decisions:  # sites; decisions are at most as many
                raise limit_error(self.limits, "max_decisions", f"the space has more than "
                                  f"{self.limits.max_decisions:,} choice points", choice.span, self.source)
            self.seen.add((ns, id(choice)))
            self.found.append((ns, choice, kind, where))

    def definition(self, d: ast.Definition, ns: str) -> None:
        if (ns, d.name) in self.walked:
            return
        self.walked.add((ns, d.name))
        if len(self.walked) > self.limits.max_steps:  # labelled instances (`as a`) multiply: each is walked once
            raise limit_error(self.limits, "max_steps", f"listing the decisions walks more than "
                              f"{self.limits.max_steps:,} labelled block instances", d.span, self.source)
        for p in d.params:
            if p.default is not None:
                self.expr(p.default, f"{d.name}.{p.name}", ns)
        self.body(d.body, d.name, ns)

    def body(self, body: Sequence[ast.Stmt], where: str, ns: str) -> None:
        for s in body:
            if isinstance(s, ast.AssignStmt):
                self.flow(s.flow, f"{where}.{s.target}", ns)
            elif isinstance(s, ast.OutputStmt):
                self.flow(s.flow, f"{where}.{s.name or 'output'}", ns)
            elif isinstance(s, ast.LetStmt):
                self.expr(s.value, f"{where}.{s.target}", ns)
            elif isinstance(s, ast.InputStmt):
                for e in s.shape or ():
                    self.expr(e, f"{where}.input", ns)
            elif isinstance(s, ast.ForStmt):
                self.expr(s.start, f"{where}.{s.var}", ns)
                if s.stop is not None:
                    self.expr(s.stop, f"{where}.{s.var}", ns)
                self.body(s.body, where, ns)
            elif isinstance(s, ast.IfStmt):
                self.expr(s.condition, f"{where}.if", ns)
                self.body(s.then, where, ns)
                self.body(s.otherwise, where, ns)

    def flow(self, flow: ast.Flow, where: str, ns: str) -> None:
        if isinstance(flow.sources, ast.Choice):
            self.add(ns, flow.sources, "input", where)
        elif isinstance(flow.sources, tuple):
            for f in flow.sources:
                self.flow(f, where, ns)
        for layer in flow.layers:
            if isinstance(layer.target, ast.Choice):
                self.add(ns, layer.target, "layer", where)
                calls = [o if isinstance(o, ast.Call) else ast.Call(o.id, (), span=o.span)
                         for o in layer.target.options if isinstance(o, (ast.Call, ast.Name))]
            else:
                calls = [layer.target]
            for call in calls:
                for a in call.args:
                    self.expr(a.value, where, ns)
                if call.func in self.blocks:
                    self.definition(self.blocks[call.func], ns + (layer.label + "." if layer.label else ""))
            if isinstance(layer.repeat, ast.Choice):
                self.add(ns, layer.repeat, "depth", where)
            elif layer.repeat is not None:
                self.expr(layer.repeat, where, ns)

    def expr(self, e: ast.Expr, where: str, ns: str) -> None:
        if isinstance(e, ast.Choice):
            self.add(ns, e, "value", where)
            for o in e.options:
                self.expr(o, where, ns)
        elif isinstance(e, ast.BinOp):
            self.expr(e.left, where, ns)
            self.expr(e.right, where, ns)
        elif isinstance(e, ast.UnaryOp):
            self.expr(e.operand, where, ns)
        elif isinstance(e, ast.Call):
            for a in e.args:
                self.expr(a.value, where, ns)


@dataclass
class Space:
    """A module with choice points. ``concretize`` gives ordinary IR; ``compile`` the full CompileResult."""

    module: ast.Module
    source: str
    decisions: tuple[Decision, ...]
    sites: Mapping[tuple[str, int], int]      # (namespace, id(choice AST node)) -> decision index
    params: Mapping[str, Any] = field(default_factory=dict)
    options: CompileOptions = field(default_factory=CompileOptions)
    _compiled: dict[Genotype, CompileResult] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return next(d.name for d in self.module.definitions if d.kind == "model")

    @property
    def size(self) -> int:
        n = 1
        for d in self.decisions:
            n *= len(d.options)
        return n

    def check_genotype(self, genotype: Sequence[int]) -> Genotype:
        g = tuple(int(v) for v in genotype)
        if len(g) != len(self.decisions):
            raise ValueError(f"genotype has {len(g)} entries, the space has {len(self.decisions)} decisions")
        for v, d in zip(g, self.decisions):
            if not 0 <= v < len(d.options):
                raise ValueError(f"decision '{d.name}' has {len(d.options)} options, got index {v}")
        return g

    def concretize(self, genotype: Sequence[int]) -> Graph:
        g = self.check_genotype(genotype)
        return to_graph(self.module, self.source, self.params, self.options,
                        chooser=lambda choice, namespace: g[self.sites[(namespace, id(choice))]])

    def compile(self, genotype: Sequence[int]) -> CompileResult:
        """Concrete IR through the passes and backends; the last few results are kept, since a search compiles
        the same candidate for its costs, its evaluator and its report."""
        g = self.check_genotype(genotype)
        if g in self._compiled:
            return self._compiled[g]
        try:
            result = compile_graph(self.concretize(g), self.source, self.options)
        except ArchError as err:
            raise err.with_source(self.source) from None
        self._compiled[g] = result
        while len(self._compiled) > 8:
            self._compiled.pop(next(iter(self._compiled)))
        return result

    def describe(self, genotype: Sequence[int]) -> dict[str, str]:
        g = self.check_genotype(genotype)
        return {d.name: d.options[v] for d, v in zip(self.decisions, g)}

    def random_genotype(self, rng: _random.Random) -> Genotype:
        return tuple(rng.randrange(len(d.options)) for d in self.decisions)

    def genotypes(self) -> Iterator[Genotype]:
        return itertools.product(*(range(len(d.options)) for d in self.decisions))  # type: ignore[return-value]

    def validate(self, samples: int = 16, seed: int = 0) -> None:
        """Static check of the space: every option of every decision (others at their first option), plus random
        combinations, must compile; the first failure is reported with the options that caused it."""
        base = [0] * len(self.decisions)
        trials: list[tuple[int, ...]] = [tuple(base)]
        for i, d in enumerate(self.decisions):
            for v in range(1, len(d.options)):
                trials.append(tuple(base[:i] + [v] + base[i + 1:]))
        rng = _random.Random(seed)
        trials += [self.random_genotype(rng) for _ in range(samples)]
        for g in trials:
            try:
                self.compile(g)
            except ArchError as err:
                chosen = ", ".join(f"{d.name}={d.options[v]}" for d, v in zip(self.decisions, g))
                raise ArchError(err.message, err.span, self.source,
                                f"{err.hint + '; ' if err.hint else ''}with the choices {chosen}",
                                stage="space") from None


def load_space(text: str, filename: str = "<string>", *, options: CompileOptions | None = None,
               **params: Any) -> Space:
    """Parse a space and enumerate its decisions (no choice is taken yet)."""
    options = options or CompileOptions()
    try:
        module = parse_module(text, filename, options.registry, options.limits)
        found = _Sites(module, options.limits, text).collect()
    except ArchError as err:
        raise err.with_source(text) from None
    decisions: list[Decision] = []
    by_name: dict[str, int] = {}
    sites: dict[tuple[str, int], int] = {}
    counts: dict[str, int] = {}
    for ns, choice, kind, where in found:
        name = ns + (choice.label or where)
        if choice.label is None:
            counts[name] = counts.get(name, 0) + 1
            name = name if counts[name] == 1 else f"{name}{counts[name]}"
        options_text = tuple(_text(text, o.span) for o in choice.options)
        if name in by_name:
            existing = decisions[by_name[name]]
            if choice.label is None or existing.options != options_text:
                raise ArchError(f"two choices are both named '{name}' but offer different options "
                                f"({' | '.join(existing.options)} at {existing.span})", choice.span, text,
                                "use one label for choices that must always agree, with the same options")
            sites[(ns, id(choice))] = by_name[name]
            continue
        by_name[name] = len(decisions)
        sites[(ns, id(choice))] = len(decisions)
        decisions.append(Decision(name, options_text, kind, choice.span))
    return Space(module, text, tuple(decisions), sites, dict(params), options)


def load_space_file(path: str, **kwargs: Any) -> Space:
    options = kwargs.get("options") or CompileOptions()
    return load_space(read_source(path, options.limits), str(path), **kwargs)
