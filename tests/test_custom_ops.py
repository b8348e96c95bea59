"""Registering an op from a user's module: no edit to the project, and the op behaves like a built-in."""
from __future__ import annotations

import torch

from compiler import compile_source


def test_custom_op_module_registers_working_ops() -> None:
    import examples.custom_ops  # noqa: F401  (registers channel_shuffle and hardtanh)
    result = compile_source("model s() { input x: [4, 2, 2] output x -> channel_shuffle(2) -> hardtanh(0.0, 2.0) }")
    model = result.build()
    x = torch.arange(16.0).reshape(1, 4, 2, 2) / 8
    expected = x.reshape(1, 2, 2, 2, 2).transpose(1, 2).reshape(1, 4, 2, 2).clamp(0.0, 2.0)
    assert torch.equal(model(x), expected)
