"""What a pass is, and the pass manager that runs a pipeline of them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

from compiler.errors import ArchError
from compiler.ir.graph import Graph


class Pass(Protocol):
    """A named, pure transformation ``apply(graph) -> graph``."""

    name: str

    def apply(self, graph: Graph) -> Graph: ...


@dataclass
class PassManager:
    passes: Sequence[Pass]
    debug: bool = False                                     # verify the IR after every pass
    verifier: Callable[[Graph], None] | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def run(self, graph: Graph, source: str | None = None) -> Graph:
        for p in self.passes:
            try:
                graph = p.apply(graph)
            except ArchError as err:
                raise ArchError(err.message, err.span, err.source or source, err.hint, err.stage or p.name) from None
            if self.debug and self.verifier is not None:
                try:
                    self.verifier(graph)
                except ArchError as err:
                    raise ArchError(f"internal error: IR invalid after pass '{p.name}': {err.message}", err.span,
                                    source, stage="verify") from err
        return graph
