"""Dead-code elimination: drop layers whose value reaches no output (main or auxiliary), and say so."""
from __future__ import annotations

from compiler.ir.graph import Graph


class EliminateDeadCode:
    name = "dce"

    def __init__(self, warn: bool = True) -> None:
        self.warn = warn  # False after passes that make dead code themselves (it is not the user's)

    def apply(self, graph: Graph) -> Graph:
        live = graph.live()
        dead = [n for n in graph.nodes if n.name not in live and n.op != "input"]
        if not dead:
            return graph
        warnings = list(graph.meta.get("warnings", ()))
        for n in dead if self.warn else ():
            warnings.append(f"{n.span}: warning: the value of '{n.name}' ({n.op}) is never used; it was removed")
        kept = [n for n in graph.nodes if n.name in live or n.op == "input"]
        return graph.replace_nodes(kept).with_meta(warnings=tuple(warnings))
