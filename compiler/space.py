"""Search spaces from .arch files: ``load_space`` parses one, lists its decisions and gives it the compiler.

The Space type and its genotype helpers are the IR's (``compiler/ir/space.py``); the decisions and the site table
come from the frontend (``compiler/frontend/sites.py``). This module joins them with what sits above the IR:
``concretize`` runs the expander with a chooser that reads the genotype through the site table, ``compile`` adds
the passes and backends (``compiler.api``).
"""
from __future__ import annotations

from typing import Any

from compiler.api import CompileOptions, CompileResult, compile_graph, parse_module, read_source, to_graph
from compiler.errors import ArchError
from compiler.frontend import ast
from compiler.frontend.sites import space_decisions
from compiler.ir.graph import Graph
from compiler.ir.space import Decision, Genotype, Space

__all__ = ["Decision", "Genotype", "Space", "ArchCompiler", "load_space", "load_space_file"]


class ArchCompiler:
    """Genotype -> IR -> CompileResult for a space loaded from an .arch file (``Space.compiler``). It holds
    nothing (the program is in the Space), so a Space pickles with it."""

    def concretize(self, space: Space, genotype: Genotype) -> Graph:
        def chooser(choice: ast.Choice, namespace: str) -> int:
            return genotype[space.decision_at(namespace, choice.site)]
        return to_graph(space.module, space.source, space.params, space.options, chooser=chooser)

    def compile(self, space: Space, genotype: Genotype) -> CompileResult:
        try:
            return compile_graph(self.concretize(space, genotype), space.source, space.options)
        except ArchError as err:
            raise err.with_source(space.source) from None


def load_space(text: str, filename: str = "<string>", *, options: CompileOptions | None = None,
               **params: Any) -> Space:
    """Parse a space and enumerate its decisions (no choice is taken yet)."""
    options = options or CompileOptions()
    try:
        module = parse_module(text, filename, options.registry, options.limits)
        decisions, sites = space_decisions(module, text, options.limits)
    except ArchError as err:
        raise err.with_source(text) from None
    name = next(d.name for d in module.definitions if d.kind == "model")
    return Space(decisions, name, dict(sites), module, text, dict(params), options, ArchCompiler())


def load_space_file(path: str, **kwargs: Any) -> Space:
    options = kwargs.get("options") or CompileOptions()
    return load_space(read_source(path, options.limits), str(path), **kwargs)
