"""The shape-inference pass: shapes of every op, and shape errors at the user's line."""
from __future__ import annotations

import pytest

from compiler import ArchError, compile_source


def _shapes(body: str, shape: str = "[3, 32, 32]") -> dict[str, list[int]]:
    result = compile_source(f"model m() {{ input x: {shape}\n{body} }}")
    return {layer["name"]: layer["output_shape"] for layer in result.summary["layers"]}


def test_convolution_and_pooling_shapes() -> None:
    s = _shapes("""
        a = x -> conv(8, 3, stride=2)
        b = a -> conv(8, 5, padding=0, dilation=2)
        c = b -> maxpool(2)
        d = c -> avgpool(3, stride=1, padding=1)
        e = d -> dwconv(3, multiplier=2)
        f = e -> sepconv(4, 3, stride=2)
        g = f -> adaptive_avgpool(3)
        h = g -> global_avgpool
        output h -> flatten -> linear(5)
    """)
    assert s["a"] == [8, 16, 16] and s["b"] == [8, 8, 8] and s["c"] == [8, 4, 4] and s["d"] == [8, 4, 4]
    assert s["e"] == [16, 4, 4] and s["f"] == [4, 2, 2] and s["g"] == [4, 3, 3] and s["h"] == [4, 1, 1]
    assert s["flatten1"] == [4] and s["linear1"] == [5]


def test_ceil_mode_and_zero_stride() -> None:
    s = _shapes("a = x -> maxpool(2, ceil_mode=true)\n b = x -> zero(stride=2)\n output (a, b) -> concat",
                "[2, 7, 7]")
    assert s["a"] == [2, 4, 4] and s["b"] == [2, 4, 4]


def test_merging_ops() -> None:
    s = _shapes("""
        a = x -> conv(4, 1)
        gate = x -> global_avgpool -> conv(4, 1) -> sigmoid
        b = (a, gate) -> mul
        output (a, b, x) -> concat
    """)
    assert s["b"] == [4, 32, 32] and s["concat1"] == [11, 32, 32]


@pytest.mark.parametrize("body, line, words", [
    ("output x -> linear(10)", 2, "'linear' expects a flat [features] input, got [3, 32, 32]; add 'flatten'"),
    ("a = x -> conv(8, 1)\n output (a, x) -> add", 3,
     "input 1 is [8, 32, 32], input 2 is [3, 32, 32] (channels differ)"),
    ("output x -> conv(8, 40, padding=0)", 2, "does not fit"),
    ("output x -> flatten -> conv(3)", 2, "cannot follow 'flatten'"),
    ("a = x -> maxpool(2)\n output (a, x) -> concat", 3, "agree in all but the channel dimension"),
    ("output x -> conv(4, groups=2)", 2, "groups=2 must divide"),
    ("output x -> maxpool(64)", 2, "does not fit"),
])
def test_shape_errors_point_at_the_line(body: str, line: int, words: str) -> None:
    with pytest.raises(ArchError) as info:
        compile_source(f"model m() {{ input x: [3, 32, 32]\n {body} }}", "s.arch")
    err = info.value
    assert err.span.line == line and words in err.message
    assert "shape error" in str(err) and "(in pass 'infer_shapes')" in str(err)
