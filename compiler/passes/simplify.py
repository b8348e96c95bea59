"""Algebraic simplification: drop what cannot change the result, so generated code does only real work.

* ``identity`` layers are forwarded: their users read the identity's input;
* in ``add``, inputs that are ``zero`` layers are dropped (x + 0 = x); an ``add`` left with one input is forwarded
  to it, and one whose inputs are all zeros becomes its first zero.

Cell search spaces produce these all the time (NAS-Bench-201's ``none`` and ``skip_connect`` edges). It runs
after shape inference, so a shape error is never simplified away; dead-code elimination afterwards removes the
layers nobody reads any more.
"""
from __future__ import annotations

from dataclasses import replace

from compiler.ir.graph import Graph, Node, frozen


class Simplify:
    name = "simplify"

    def apply(self, graph: Graph) -> Graph:
        alias: dict[str, str] = {}   # node name -> the node whose value it equals
        nodes: list[Node] = []
        ops = {n.name: n.op for n in graph.nodes}

        def resolve(name: str) -> str:
            while name in alias:
                name = alias[name]
            return name

        for node in graph.nodes:
            inputs = tuple(resolve(i) for i in node.inputs)
            if node.op == "identity":
                alias[node.name] = inputs[0]
                continue
            if node.op == "add":
                kept = tuple(i for i in inputs if ops[i] != "zero")
                if len(kept) <= 1:
                    alias[node.name] = kept[0] if kept else inputs[0]
                    continue
                inputs = kept
            nodes.append(node if inputs == node.inputs else _with_inputs(node, inputs))
        if not alias:
            return graph
        return graph.replace_nodes(nodes, output=resolve(graph.output))


def _with_inputs(node: Node, inputs: tuple[str, ...]) -> Node:
    """The node reading other (equal-valued) inputs; an add's inputs all share its output shape."""
    meta = dict(node.meta)
    if node.op == "add" and "input_shapes" in meta:
        meta["input_shapes"] = (node.meta["shape"],) * len(inputs)
    return replace(node, inputs=inputs, meta=frozen(meta))
