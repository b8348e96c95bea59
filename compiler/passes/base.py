"""What a pass is, and the pass manager that runs a pipeline of them.

A pass is a small named object with a pure ``apply(graph) -> graph``. It declares the *facts* about the IR it
``requires`` and ``provides`` (``"shapes"``: every node's shape in meta; ``"costs"``: parameters and MACs) and
those its rewriting ``invalidates``, so a pipeline that cannot work is refused before it runs
(``compiler/passes/pipeline.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Protocol, Sequence

from compiler.errors import ArchError
from compiler.ir.graph import Graph

SHAPES = "shapes"   # node.meta["shape"] and ["input_shapes"] (infer_shapes)
COSTS = "costs"     # node and graph meta "params", "macs", ... (analyse)


class Pass(Protocol):
    """A named, pure transformation ``apply(graph) -> graph``."""

    name: ClassVar[str]
    requires: ClassVar[tuple[str, ...]]      # facts the input IR must have
    provides: ClassVar[tuple[str, ...]]      # facts the output IR has
    invalidates: ClassVar[tuple[str, ...]]   # facts a rewrite may make stale

    def apply(self, graph: Graph) -> Graph: ...


class PassError(RuntimeError):
    """A pass failed on a bug, not on the user's input (an ArchError): the message names the pass."""


@dataclass
class PassManager:
    passes: Sequence[Pass]
    debug: bool = False                                     # verify the IR after every pass
    verifier: Callable[[Graph], None] | None = None

    def run(self, graph: Graph, source: str | None = None) -> Graph:
        for p in self.passes:
            try:
                graph = p.apply(graph)
            except ArchError as err:
                raise ArchError(err.message, err.span, err.source or source, err.hint, err.stage or p.name) from None
            except Exception as err:
                raise PassError(f"internal error in pass '{p.name}': {type(err).__name__}: {err}") from err
            if self.debug and self.verifier is not None:
                try:
                    self.verifier(graph)
                except ArchError as err:
                    raise ArchError(f"internal error: IR invalid after pass '{p.name}': {err.message}", err.span,
                                    source, stage="verify") from err
        return graph
