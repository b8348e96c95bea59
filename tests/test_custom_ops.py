"""Registering an op from a user's module: no edit to the project, and the op behaves like a built-in."""
from __future__ import annotations

import pytest
import torch

from compiler import compile_source


def test_custom_op_module_registers_working_ops() -> None:
    import examples.custom_ops  # noqa: F401  (registers channel_shuffle and hardtanh)
    result = compile_source("model s() { input x: [4, 2, 2] output x -> channel_shuffle(2) -> hardtanh(0.0, 2.0) }")
    model = result.build()
    x = torch.arange(16.0).reshape(1, 4, 2, 2) / 8
    expected = x.reshape(1, 2, 2, 2, 2).transpose(1, 2).reshape(1, 4, 2, 2).clamp(0.0, 2.0)
    assert torch.equal(model(x), expected)



def test_a_user_op_returning_a_view_is_never_overwritten_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    """An op registered with the defaults may return a view of its input (reshape, transpose, slicing): an in-place
    ReLU after it would overwrite that input, which the residual reads again. The default says "not fresh"."""
    from compiler import Lowering, register_op
    from compiler.ir.ops import REGISTRY
    monkeypatch.setattr(REGISTRY, "_ops", dict(REGISTRY._ops))  # the test's op leaves with the test
    register_op("test_alias_view", infer_shape=lambda a, i: i[0], replace=True,
                lower=lambda a, i, o: Lowering(None, lambda m, x: f"{x[0]}.view_as({x[0]})"))
    text = """model m() {
        input x: [4]
        h = x -> linear(4)
        y = h -> OP -> relu
        output (h, y) -> add
    }"""
    viewing = compile_source(text.replace("OP", "test_alias_view"))
    plain = compile_source(text.replace("OP", "identity"))
    model, reference = viewing.build(), plain.build()
    reference.load_state_dict(model.state_dict())
    x = torch.randn(8, 4)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
        assert torch.equal(model(x), model.h(x) + torch.relu(model.h(x)))
