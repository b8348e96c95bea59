"""Shape inference and validation: every node gets meta['shape'] before any code is generated."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from compiler.errors import ArchError
from compiler.ir.graph import Graph, Node
from compiler.ir.ops import REGISTRY, OpRegistry, ShapeError
from compiler.passes.base import SHAPES


def _fmt(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


@dataclass(frozen=True)
class InferShapes:
    name: ClassVar[str] = "infer_shapes"
    requires: ClassVar[tuple[str, ...]] = ()
    provides: ClassVar[tuple[str, ...]] = (SHAPES,)
    invalidates: ClassVar[tuple[str, ...]] = ()
    registry: OpRegistry = REGISTRY

    def apply(self, graph: Graph) -> Graph:
        shapes: dict[str, tuple[int, ...]] = {}
        out: list[Node] = []
        for node in graph.nodes:
            spec = self.registry[node.op]
            in_shapes = [shapes[i] for i in node.inputs]
            try:
                shape = tuple(spec.infer_shape(node.attrs, in_shapes))
            except ShapeError as err:
                raise _located(node, str(err), in_shapes) from None
            if any(d < 1 for d in shape):
                raise _located(node, f"'{node.op}' would produce an empty tensor {_fmt(shape)}", in_shapes)
            shapes[node.name] = shape
            out.append(node.with_meta(shape=shape, input_shapes=tuple(in_shapes)))
        return graph.replace_nodes(out)


def _located(node: Node, message: str, in_shapes: list[tuple[int, ...]]) -> ArchError:
    stack = node.meta.get("stack", ())
    hint = None
    if stack:
        hint = "inside block " + ", ".join(f"'{name}' used at {span}" for name, span in reversed(stack))
    if in_shapes and "got" not in message and "input 1" not in message:
        message += f" (input shape {', '.join(_fmt(s) for s in in_shapes)})"
    if node.meta.get("what"):  # what the node stands for, when that is not the op (a supernet's decision)
        message += f" ({node.meta['what']})"
    return ArchError(f"shape error: {message}", node.span, hint=hint, stage="infer_shapes")
