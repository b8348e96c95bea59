"""The decisions of a search space: its choice sites, listed as the expander meets them.

Every ``[a | b | c]`` in the text is a choice point: a layer choice (which op or block), a value choice (a width,
a kernel size), a depth (``block(...) * [1 | 2 | 3]``) or an input choice (``([n0 | n1], n2) -> add``).
Each choice site is one Decision, shared by every instance of the block it sits in (as cells are shared in
DARTS and NAS-Bench-201); an instance written ``block(...) as label`` has its own decisions (``label.*``); sites
labelled with the same ``as NAME`` are one decision. Decisions are ordered by their first appearance in the file.

The walk follows the expander's rules (``instance_namespace``, ``option_call``, shared with expand.py) through
every branch, loop body and option at once, since which ones a genotype takes is not known yet. Its result, the
site table ``(namespace, choice site id) -> decision``, is what the expander's chooser reads for a genotype.
"""
from __future__ import annotations

from typing import Sequence

from compiler.errors import ArchError, Span
from compiler.frontend import ast
from compiler.ir.space import Decision
from compiler.limits import DEFAULT_LIMITS, Limits, limit_error

SiteKey = tuple[str, int]   # (namespace, ast.Choice.site)


def instance_namespace(namespace: str, label: str | None) -> str:
    """The decision namespace inside a block instance: the enclosing one, plus ``label.`` for ``as label``."""
    return namespace + (label + "." if label else "")


def option_call(option: ast.Expr) -> ast.Call | None:
    """An option of a layer choice as the call it makes (``identity`` -> ``identity()``); None if it is neither
    an op nor a block."""
    if isinstance(option, ast.Name):
        return ast.Call(option.id, (), False, span=option.span)
    return option if isinstance(option, ast.Call) else None


class _Walk:
    """Collect the choice sites of the model and, through block instances, of every block it uses, in order."""

    def __init__(self, module: ast.Module, limits: Limits, source: str | None) -> None:
        self.limits, self.source = limits, source
        self.blocks = {d.name: d for d in module.definitions if d.kind == "block"}
        self.model = next(d for d in module.definitions if d.kind == "model")
        self.found: list[tuple[str, ast.Choice, str, str]] = []  # (namespace, choice, kind, default name)
        self.seen: set[SiteKey] = set()
        self.walked: set[tuple[str, str]] = set()

    def collect(self) -> list[tuple[str, ast.Choice, str, str]]:
        self.definition(self.model, "")
        return self.found

    def add(self, ns: str, choice: ast.Choice, kind: str, where: str) -> None:
        if (ns, choice.site) not in self.seen:
            if len(self.found) >= self.limits.max_decisions:  # sites; decisions are at most as many
                raise limit_error(self.limits, "max_decisions", f"the space has more than "
                                  f"{self.limits.max_decisions:,} choice points", choice.span, self.source)
            self.seen.add((ns, choice.site))
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
                calls = [c for c in map(option_call, layer.target.options) if c is not None]
            else:
                calls = [layer.target]
            for call in calls:
                for a in call.args:
                    self.expr(a.value, where, ns)
                if call.func in self.blocks:
                    self.definition(self.blocks[call.func], instance_namespace(ns, layer.label))
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


def _text(source: str, span: Span) -> str:
    lines = source.splitlines()
    if span.line == span.end_line:
        return lines[span.line - 1][span.column - 1: span.end_column - 1]
    parts = [lines[span.line - 1][span.column - 1:], *lines[span.line: span.end_line - 1],
             lines[span.end_line - 1][: span.end_column - 1]]
    return " ".join(p.strip() for p in parts)


def space_decisions(module: ast.Module, source: str, limits: Limits = DEFAULT_LIMITS
                    ) -> tuple[tuple[Decision, ...], dict[SiteKey, int]]:
    """The decisions of a checked module, in order, and the site table: (namespace, site id) -> decision."""
    decisions: list[Decision] = []
    by_name: dict[str, int] = {}
    sites: dict[SiteKey, int] = {}
    counts: dict[str, int] = {}
    for ns, choice, kind, where in _Walk(module, limits, source).collect():
        name = ns + (choice.label or where)
        if choice.label is None:
            counts[name] = counts.get(name, 0) + 1
            name = name if counts[name] == 1 else f"{name}{counts[name]}"
        options_text = tuple(_text(source, o.span) for o in choice.options)
        if name in by_name:
            existing = decisions[by_name[name]]
            if choice.label is None or existing.options != options_text:
                raise ArchError(f"two choices are both named '{name}' but offer different options "
                                f"({' | '.join(existing.options)} at {existing.span})", choice.span, source,
                                "use one label for choices that must always agree, with the same options")
            sites[(ns, choice.site)] = by_name[name]
            continue
        by_name[name] = len(decisions)
        sites[(ns, choice.site)] = len(decisions)
        decisions.append(Decision(name, options_text, kind, choice.span))
    return tuple(decisions), sites
