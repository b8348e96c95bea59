"""The simplification pass: identities forwarded, zero terms of sums dropped, same function computed."""
from __future__ import annotations

import torch

from compiler import ArchError, compile_source

import pytest


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
