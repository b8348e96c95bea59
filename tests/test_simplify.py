"""The simplification pass: identities forwarded, zero terms of sums dropped, same function computed."""
from __future__ import annotations

import pytest
import torch

from compiler import ArchError, compile_source
from compiler.ir.graph import Graph, Node, frozen
from compiler.backends.lowerings import Lowering
from compiler.ir.ops import OpRegistry, register_op
from compiler.passes.dce import EliminateDeadCode
from compiler.passes.simplify import Simplify


def test_identity_and_zero_terms_disappear_and_the_function_is_kept() -> None:
    result = compile_source("""
    model m() { input x: [2, 4, 4]
        a = x -> conv(2, 1)
        b = a -> identity
        c = (b, x -> zero, a -> relu) -> add
        d = (x -> zero, a -> zero) -> add
        output (c, d) -> add -> identity
    }""")
    ops = [n.op for n in result.graph.nodes]
    assert "identity" not in ops and ops.count("zero") == 0 and ops.count("add") == 1
    add = next(n for n in result.graph.nodes if n.op == "add")
    assert add.inputs == ("a", "relu1") and result.graph.output == add.name
    model = result.build().eval()
    x = torch.randn(3, 2, 4, 4)
    conv = model.a
    expected = conv(x) + torch.relu(conv(x))
    assert torch.allclose(model(x), expected)


def test_shape_errors_are_not_simplified_away() -> None:
    with pytest.raises(ArchError, match="shape error"):
        compile_source("model m() { input x: [2, 4, 4]\n output (x, x -> zero(stride=2)) -> add }")


# ---- IR in, IR out ---------------------------------------------------------------------------------------------
def _n(name: str, op: str, *inputs: str, **attrs: object) -> Node:
    return Node(name, op, tuple(inputs), frozen(attrs))


def _graph(*nodes: Node, output: str, aux: tuple[tuple[str, str], ...] = ()) -> Graph:
    return Graph("g", nodes, output, aux_outputs=aux)


def test_zero_terms_are_dropped_even_when_nothing_is_forwarded() -> None:
    """The bug of issue 11: a sum that only lost a zero term was thrown away with the rest of the rewrite."""
    conv = dict(channels=2, kernel=1, stride=1, padding=0, dilation=1, groups=1, bias=True)
    before = _graph(_n("x", "input", shape=(2, 4, 4)), _n("a", "conv", "x", **conv), _n("z", "zero", "x", stride=1),
                    _n("b", "relu", "a"), _n("s", "add", "a", "z", "b"), output="s")
    after = Simplify().apply(before)
    assert after == _graph(_n("x", "input", shape=(2, 4, 4)), _n("a", "conv", "x", **conv),
                           _n("z", "zero", "x", stride=1), _n("b", "relu", "a"), _n("s", "add", "a", "b"),
                           output="s")
    assert after.meta["elided_reads"] == ("z",)
    cleaned = EliminateDeadCode().apply(after)
    assert cleaned == _graph(
        _n("x", "input", shape=(2, 4, 4)), _n("a", "conv", "x", **conv), _n("b", "relu", "a"),
        _n("s", "add", "a", "b"), output="s")
    assert cleaned.meta.get("warnings", ()) == ()  # `z` was the user's term of the sum: not dead code of theirs


def test_forwarding_reaches_outputs_and_sums_of_zeros() -> None:
    before = _graph(_n("x", "input", shape=(3,)), _n("i", "identity", "x"), _n("z1", "zero", "i", stride=1),
                    _n("z2", "zero", "x", stride=1), _n("zz", "add", "z1", "z2"),      # all zeros: becomes z1
                    _n("s", "add", "zz", "i"),                                            # x + 0: becomes x
                    _n("r", "relu", "s"), _n("head", "identity", "zz"),
                    output="r", aux=(("aux", "head"),))
    assert Simplify().apply(before) == _graph(
        _n("x", "input", shape=(3,)), _n("z1", "zero", "x", stride=1), _n("z2", "zero", "x", stride=1),
        _n("r", "relu", "x"), output="r", aux=(("aux", "z1"),))


def test_an_unchanged_graph_is_returned_as_is() -> None:
    graph = _graph(_n("x", "input", shape=(3,)), _n("r", "relu", "x"), output="r")
    assert Simplify().apply(graph) is graph


def test_simplification_follows_the_registered_properties_not_op_names() -> None:
    """A user's ops with the algebraic flags are simplified like the built-in ones."""
    registry = OpRegistry()
    lower = lambda a, i, o: Lowering(None, lambda m, x: x[0])  # noqa: E731
    for name, flags in [("input", {}), ("nothing", {"zero_output": True}), ("total", {"sums_inputs": True}),
                        ("same", {"returns_input": True}), ("add", {}), ("zero", {})]:
        register_op(name, infer_shape=lambda a, i: i[0], lower=lower, num_inputs=None, registry=registry, **flags)
    before = _graph(_n("x", "input"), _n("n", "nothing", "x"), _n("k", "same", "x"), _n("t", "total", "k", "n"),
                    _n("u", "add", "t", "n"), _n("w", "zero", "u"), _n("v", "total", "w", "u"), output="v")
    # `add` and `zero` carry no flags in this registry, so they stay; `total`, `nothing` and `same` go
    assert Simplify(registry).apply(before) == _graph(
        _n("x", "input"), _n("n", "nothing", "x"), _n("u", "add", "x", "n"), _n("w", "zero", "u"),
        _n("v", "total", "w", "u"), output="v")
