"""The cost-analysis pass: parameters and MACs per layer and in total."""
from __future__ import annotations

from compiler import compile_source


def test_parameter_and_mac_counts_match_pytorch() -> None:
    result = compile_source("""
    model m() { input x: [3, 16, 16]
        a = x -> conv(8, 3, stride=2)
        b = a -> bn
        c = b -> dwconv(3, bias=false)
        d = c -> sepconv(16, 3, bias=false)
        output d -> global_avgpool -> flatten -> linear(10)
    }""")
    layers = {layer["name"]: layer for layer in result.summary["layers"]}
    assert layers["a"]["params"] == 8 * 3 * 9 + 8 and layers["a"]["macs"] == 8 * 8 * 8 * 3 * 9
    assert layers["b"]["params"] == 16 and layers["b"]["macs"] == 0
    assert layers["c"]["params"] == 8 * 9 and layers["c"]["macs"] == 8 * 8 * 8 * 9
    assert layers["d"]["params"] == 8 * 9 + 8 * 16
    assert layers["d"]["macs"] == 8 * 8 * 8 * 9 + 8 * 8 * 8 * 16
    assert layers["linear1"]["params"] == 16 * 10 + 10 and layers["linear1"]["macs"] == 160
    total = sum(layer["params"] for layer in layers.values())
    assert result.summary["params"] == total
    assert total == sum(p.numel() for p in result.build().parameters())
    assert result.summary["macs"] == sum(layer["macs"] for layer in layers.values())


def test_activation_memory_estimate_scales_with_batch() -> None:
    from compiler.backends.summary import activation_memory_bytes
    result = compile_source("model m() { input x: [1, 8, 8] output x -> conv(4, 3) -> relu }")
    # conv and relu outputs: 2 x 4x8x8 fp32 values per sample (the input is the caller's)
    assert activation_memory_bytes(result.graph, 1) == 2 * 4 * 8 * 8 * 4
    assert activation_memory_bytes(result.graph, 32) == 32 * activation_memory_bytes(result.graph, 1)
