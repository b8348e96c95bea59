"""Dead-code elimination: values that never reach the output are removed, with a located warning."""
from __future__ import annotations

from compiler import compile_source
from compiler.ir.graph import Graph, Node, frozen
from compiler.passes.dce import EliminateDeadCode


def test_unused_values_are_removed_with_a_warning() -> None:
    result = compile_source("model m() { input x: [1, 4, 4]\n unused = x -> conv(2, 1)\n output x -> relu }", "d.arch")
    assert [n.name for n in result.graph.nodes] == ["x", "relu1"]
    assert result.warnings == ("d.arch:2:16: warning: the value of 'unused' (conv) is never used; it was removed",)
    assert result.summary["params"] == 0 and "unused" not in result.source


def test_ir_in_ir_out_keeps_what_any_output_needs() -> None:
    def n(name: str, op: str, *inputs: str) -> Node:
        return Node(name, op, inputs, frozen())
    before = Graph("g", (n("x", "input"), n("y", "input"), n("a", "relu", "x"), n("dead", "relu", "a"),
                         n("h", "sigmoid", "a"), n("b", "tanh", "a")), "b", aux_outputs=(("aux", "h"),))
    after = EliminateDeadCode().apply(before)
    # the unused graph input stays (it is part of the model's signature); the auxiliary head stays
    assert after == Graph("g", (n("x", "input"), n("y", "input"), n("a", "relu", "x"), n("h", "sigmoid", "a"),
                                n("b", "tanh", "a")), "b", aux_outputs=(("aux", "h"),))
    assert after.meta["warnings"] == (
        "<unknown>:0:0: warning: the value of 'dead' (relu) is never used; it was removed",)
