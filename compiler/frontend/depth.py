"""Nesting depth of an AST, measured without recursion, so a hostile file is refused here with a location.

Every AST node is one level below its parent (an operator of an expression, an argument, a choice, a statement
inside an `if`/`for` body, a flow inside a tuple). A block used at level L adds its own depth to L, so the depth
of a definition counts through the block instances it makes. The recursive steps after this check (expansion,
evaluation, the decision walk of a space) recurse about twice per level, so ``limits.max_depth`` keeps them far
below Python's recursion limit.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Iterator

from compiler.errors import ArchError
from compiler.frontend import ast
from compiler.limits import Limits, limit_error

_FIELDS: dict[type, tuple[str, ...]] = {}


def children(node: ast.Node) -> Iterator[ast.Node]:
    """The AST nodes directly below ``node`` (tuples of nodes are transparent)."""
    names = _FIELDS.get(type(node))
    if names is None:
        names = _FIELDS[type(node)] = tuple(f.name for f in fields(node) if f.name != "span")
    for name in names:
        value = getattr(node, name)
        if isinstance(value, ast.Node):
            yield value
        elif isinstance(value, tuple):
            yield from (item for item in value if isinstance(item, ast.Node))


def _block_uses(layer: ast.Layer, blocks: dict[str, ast.Definition]) -> Iterator[tuple[str, ast.Node]]:
    options = layer.target.options if isinstance(layer.target, ast.Choice) else (layer.target,)
    for o in options:
        name = o.func if isinstance(o, ast.Call) else o.id if isinstance(o, ast.Name) else None
        if name in blocks:
            yield name, o


class _Local:
    """One definition's own depth, where it uses blocks (level, block, node), and the first node in the text
    that is deeper than ``limit`` (None if none is)."""

    def __init__(self, d: ast.Definition, blocks: dict[str, ast.Definition], limit: int) -> None:
        self.depth = 0
        self.too_deep: ast.Node | None = None
        self.uses: list[tuple[int, str, ast.Node]] = []
        stack: list[tuple[ast.Node, int]] = [(d, 0)]
        while stack:
            node, level = stack.pop()
            self.depth = max(self.depth, level)
            if level > limit:
                if self.too_deep is None or _position(node) < _position(self.too_deep):
                    self.too_deep = node
                continue  # nothing below matters
            if isinstance(node, ast.Layer):
                self.uses.extend((level + 1, name, where) for name, where in _block_uses(node, blocks))
            stack.extend((child, level + 1) for child in children(node))


def _position(node: ast.Node) -> tuple[int, int]:
    return node.span.line, node.span.column


def _too_deep(limits: Limits, detail: str, node: ast.Node, source: str | None) -> ArchError:
    return limit_error(limits, "max_depth", f"nesting too deep: {detail}", node.span, source)


class DepthCheck:
    """Two steps, since the second needs an acyclic block graph: ``local()`` before anything walks the AST
    recursively, ``through_blocks()`` once the block graph is known to be acyclic."""

    def __init__(self, module: ast.Module, limits: Limits, source: str | None = None) -> None:
        self.module, self.limits, self.source = module, limits, source
        self.blocks = {d.name: d for d in module.definitions if d.kind == "block"}
        self.locals: dict[str, _Local] = {}

    def local(self) -> None:
        for d in self.module.definitions:
            info = self.locals[d.name] = _Local(d, self.blocks, self.limits.max_depth)
            if info.too_deep is not None:
                raise _too_deep(self.limits, f"more than {self.limits.max_depth} levels of operators, arguments, "
                                "`if`/`for` bodies and tuples", info.too_deep, self.source)

    def through_blocks(self) -> None:
        total: dict[str, tuple[int, list[str]]] = {}  # name -> (depth, the blocks that reach it, outermost first)
        for d in self.module.definitions:
            work: list[tuple[str, bool]] = [(d.name, False)]  # post-order: a block before the definitions using it
            while work:
                name, ready = work.pop()
                if name in total:
                    continue
                info = self.locals[name]
                if not ready:
                    work.append((name, True))
                    work.extend((block, False) for _, block, _ in info.uses if block not in total)
                    continue
                depth, chain = info.depth, []
                for level, block, where in info.uses:
                    inner, inner_chain = total[block]
                    if level + inner > depth:
                        depth, chain = level + inner, [block, *inner_chain]
                        if depth > self.limits.max_depth:
                            path = " -> ".join([name, *chain[:8]]) + (" -> ..." if len(chain) > 8 else "")
                            raise _too_deep(self.limits, f"{depth} levels through block instances ({path}), more "
                                            f"than {self.limits.max_depth}", where, self.source)
                total[name] = (depth, chain)
