"""Algebraic simplification: drop what cannot change the result, so generated code does only real work.

Keyed on the algebraic flags ops register (``compiler/ir/ops.py``), never on op names:

* a ``returns_input`` layer (``identity``) is forwarded: its users read its input;
* in a ``sums_inputs`` op (``add``), inputs whose value is all zeros (a ``zero_output`` layer such as ``zero``,
  or a sum of nothing but zeros) are dropped (x + 0 = x); a sum left with one input is forwarded to it, and one
  whose inputs are all zeros becomes its first zero input.

Cell search spaces produce these all the time (NAS-Bench-201's ``none`` and ``skip_connect`` edges). It runs
after shape inference, so a shape error is never simplified away; dead-code elimination afterwards removes the
layers nobody reads any more, such as a cell node whose only consumer was a ``zero`` edge (the dropped zeros are
recorded in ``meta["elided_reads"]``, so that it does not report them as the user's dead code).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from compiler.ir.graph import Graph, Node, frozen
from compiler.ir.ops import REGISTRY, OpRegistry
from compiler.passes.base import COSTS, SHAPES
from compiler.passes.dce import ELIDED_READS


@dataclass(frozen=True)
class Simplify:
    name: ClassVar[str] = "simplify"
    requires: ClassVar[tuple[str, ...]] = (SHAPES,)   # after shape inference: no shape error is simplified away
    provides: ClassVar[tuple[str, ...]] = ()
    invalidates: ClassVar[tuple[str, ...]] = (COSTS,)
    registry: OpRegistry = REGISTRY

    def apply(self, graph: Graph) -> Graph:
        alias: dict[str, str] = {}   # node name -> the node whose value it equals
        zeros: set[str] = set()      # kept nodes whose value is all zeros
        elided: list[str] = []       # zeros dropped from sums: read by the user's program, no longer by the IR
        nodes: list[Node] = []
        changed = False

        def resolve(name: str) -> str:
            while name in alias:
                name = alias[name]
            return name

        for node in graph.nodes:
            spec = self.registry[node.op]
            inputs = tuple(resolve(i) for i in node.inputs)
            if spec.returns_input:
                alias[node.name] = inputs[0]
                continue
            if spec.sums_inputs:
                kept = tuple(i for i in inputs if i not in zeros)
                elided += [i for i in inputs if i in zeros and i not in elided]
                if len(kept) <= 1:
                    alias[node.name] = kept[0] if kept else inputs[0]  # a sum of zeros is its first zero
                    continue
                inputs = kept
            if spec.zero_output:
                zeros.add(node.name)
            if inputs != node.inputs:
                node = _with_inputs(node, inputs, graph)
                changed = True
            nodes.append(node)
        if not alias and not changed:
            return graph
        result = graph.replace_nodes(nodes, output=resolve(graph.output),
                                     aux_outputs=tuple((name, resolve(n)) for name, n in graph.aux_outputs))
        if elided:
            result = result.with_meta(**{ELIDED_READS: (*graph.meta.get(ELIDED_READS, ()), *elided)})
        return result


def _with_inputs(node: Node, inputs: tuple[str, ...], graph: Graph) -> Node:
    """The node reading other, equal-valued inputs (their shapes are the ones it was inferred with)."""
    meta = dict(node.meta)
    if "input_shapes" in meta:
        meta["input_shapes"] = tuple(graph.node(i).shape for i in inputs)
    return replace(node, inputs=inputs, meta=frozen(meta))
