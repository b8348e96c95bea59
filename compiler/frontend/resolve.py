"""Static name resolution on the AST, before anything is expanded.

Checks what does not depend on parameter values, so mistakes in branches that a given set of parameters never
takes are still reported: one model per file, unique definitions and parameters, every layer names a known op
or block, blocks do not instantiate themselves (directly or through others), and nesting stays within
``limits.max_depth`` (depth.py) before anything walks the AST recursively.
"""
from __future__ import annotations

from typing import Iterator, Sequence

from compiler.errors import ArchError, Span
from compiler.frontend import ast
from compiler.frontend.depth import DepthCheck
from compiler.frontend.sites import option_call
from compiler.ir.ops import REGISTRY, OpRegistry
from compiler.limits import DEFAULT_LIMITS, Limits


def _layers(body: Sequence[ast.Stmt]) -> Iterator[ast.Call]:
    def from_flow(flow: ast.Flow) -> Iterator[ast.Call]:
        if isinstance(flow.sources, tuple):
            for f in flow.sources:
                yield from from_flow(f)
        for layer in flow.layers:
            options = layer.target.options if isinstance(layer.target, ast.Choice) else (layer.target,)
            yield from (call for call in map(option_call, options) if call is not None)
    for s in body:
        if isinstance(s, (ast.AssignStmt, ast.OutputStmt)):
            yield from from_flow(s.flow)
        elif isinstance(s, ast.ForStmt):
            yield from _layers(s.body)
        elif isinstance(s, ast.IfStmt):
            yield from _layers(s.then)
            yield from _layers(s.otherwise)


def resolve(module: ast.Module, source: str | None = None, registry: OpRegistry = REGISTRY,
            limits: Limits = DEFAULT_LIMITS) -> ast.Module:
    """Return the module unchanged, or raise the first ArchError found."""
    def fail(message: str, node: ast.Node, hint: str | None = None) -> ArchError:
        return ArchError(message, node.span, source, hint, stage="resolve")

    seen: dict[str, ast.Definition] = {}
    for d in module.definitions:
        if d.name in seen:
            raise fail(f"'{d.name}' is defined twice (first at {seen[d.name].span})", d)
        if d.name in registry and not registry[d.name].internal and d.kind == "block":
            raise fail(f"block '{d.name}' has the name of a built-in op; rename the block", d)
        seen[d.name] = d
        params: set[str] = set()
        for p in d.params:
            if p.name in params:
                raise fail(f"parameter '{p.name}' is declared twice", p)
            params.add(p.name)
    models = [d for d in module.definitions if d.kind == "model"]
    if not models:
        raise ArchError("no model in this file", module.span if module.span.line else Span(module.filename, 1, 1),
                        source,
                        "add one, e.g. `model net() { input x: [3, 32, 32]  output x -> flatten -> linear(10) }`")
    if len(models) > 1:
        raise fail(f"a file holds one model; '{models[1].name}' is a second (first: '{models[0].name}')", models[1])

    depth = DepthCheck(module, limits, source)
    depth.local()
    blocks = {d.name: d for d in module.definitions if d.kind == "block"}
    uses: dict[str, list[ast.Call]] = {}
    for d in module.definitions:
        uses[d.name] = []
        for call in _layers(d.body):
            if call.func in blocks:
                uses[d.name].append(call)
            elif call.func not in registry or registry[call.func].internal:
                raise fail(f"unknown op or block '{call.func}'", call, registry.unknown_hint(call.func, blocks))

    # Recursion among blocks: an iterative depth-first search over the block-uses-block graph.
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in blocks:
        if root in state:
            continue
        state[root] = 1
        path: list[str] = [root]
        pending: list[Iterator[ast.Call]] = [iter(uses.get(root, []))]
        while pending:
            call = next(pending[-1], None)
            if call is None:
                state[path.pop()] = 2
                pending.pop()
            elif state.get(call.func) == 1:
                cycle = " -> ".join(path[path.index(call.func):] + [call.func])
                raise fail(f"blocks instantiate each other in a cycle ({cycle})", call, "blocks cannot be recursive")
            elif call.func not in state:
                state[call.func] = 1
                path.append(call.func)
                pending.append(iter(uses.get(call.func, [])))
    depth.through_blocks()
    return module
