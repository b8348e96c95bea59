"""Structural invariants of the IR (run between passes in debug mode, and by the 'verify' pass)."""
from __future__ import annotations

import keyword
from dataclasses import dataclass
from typing import ClassVar

from compiler.errors import ArchError
from compiler.ir.graph import MAIN_OUTPUT, Graph
from compiler.ir.ops import REGISTRY, OpRegistry


def verify(graph: Graph, registry: OpRegistry = REGISTRY) -> None:
    seen: set[str] = set()
    for node in graph.nodes:
        if not node.name.isidentifier():   # keywords are fine: the backends rename them (class -> class_)
            raise ArchError(f"node name {node.name!r} is not a valid identifier", node.span)
        if node.name in seen:
            raise ArchError(f"duplicate node name '{node.name}'", node.span)
        if node.op not in registry:
            raise ArchError(f"node '{node.name}' has unregistered op '{node.op}'", node.span)
        for i in node.inputs:
            if i not in seen:
                raise ArchError(f"node '{node.name}' uses '{i}' before it is computed (not topological, or a cycle)",
                                node.span)
        seen.add(node.name)
    if graph.output not in seen:
        raise ArchError(f"graph output '{graph.output}' is not a node", graph.span)
    names = [name for name, _ in graph.aux_outputs]
    for name, node in graph.aux_outputs:
        if not name.isidentifier() or keyword.iskeyword(name) or names.count(name) > 1 or name == MAIN_OUTPUT:
            raise ArchError(f"auxiliary output name {name!r} is not a unique identifier", graph.span)
        if node not in seen:
            raise ArchError(f"auxiliary output '{name}' is '{node}', which is not a node", graph.span)
    if not graph.inputs:
        raise ArchError("graph has no input", graph.span)


@dataclass(frozen=True)
class Verify:
    name: ClassVar[str] = "verify"
    requires: ClassVar[tuple[str, ...]] = ()
    provides: ClassVar[tuple[str, ...]] = ()
    invalidates: ClassVar[tuple[str, ...]] = ()
    registry: OpRegistry = REGISTRY

    def apply(self, graph: Graph) -> Graph:
        verify(graph, self.registry)
        return graph
