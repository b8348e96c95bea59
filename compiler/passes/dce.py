"""Dead-code elimination: drop layers whose value reaches no output (main or auxiliary), and say so.

Only the user's dead code is reported: a layer left unread by an earlier rewrite (``simplify`` records the
reads it removes in ``meta["elided_reads"]``, such as the input of a ``zero`` edge dropped from a sum) is dropped
silently, so the same list of passes may run dead-code elimination before and after simplification.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from compiler.ir.graph import Graph
from compiler.passes.base import COSTS

ELIDED_READS = "elided_reads"   # graph meta: nodes whose reads a rewrite removed (their producers are not dead code)


@dataclass(frozen=True)
class EliminateDeadCode:
    name: ClassVar[str] = "dce"
    requires: ClassVar[tuple[str, ...]] = ()
    provides: ClassVar[tuple[str, ...]] = ()
    invalidates: ClassVar[tuple[str, ...]] = (COSTS,)

    def apply(self, graph: Graph) -> Graph:
        live = graph.live()
        dead = [n for n in graph.nodes if n.name not in live and n.op != "input"]
        if not dead:
            return graph
        read_by_user = graph.live([*graph.outputs, *graph.meta.get(ELIDED_READS, ())])
        warnings = list(graph.meta.get("warnings", ()))
        for n in dead:
            if n.name in read_by_user:
                continue
            warnings.append(f"{n.span}: warning: the value of '{n.name}' ({n.op}) is never used; it was removed")
        kept = [n for n in graph.nodes if n.name in live or n.op == "input"]
        return graph.replace_nodes(kept).with_meta(warnings=tuple(warnings))
