"""Name resolution and block expansion (AST -> IR): values, parameters, blocks, loops, naming, and their errors."""
from __future__ import annotations

import pytest

from compiler import ArchError, compile_source, parse_graph


def test_blocks_loops_conditionals_and_lets_expand_to_a_flat_graph() -> None:
    g = parse_graph("""
    block unit(c, k = 3, act = true) {
        input x
        y = x -> conv(c, k)
        if act { y = y -> relu }
        output y
    }
    model m(w = 4) {
        input x: [3, 16, 16]
        let wide = make_divisible(w * 1.5, 4)
        x = x -> unit(w) -> unit(wide, k=1, act=false)
        for i in range(2) { x = x -> unit(w * (i + 1)) }
        output x
    }
    """)
    convs = [(n.name, n.attrs["channels"], n.attrs["kernel"]) for n in g.nodes if n.op == "conv"]
    assert convs == [("unit1_y", 4, 3), ("unit2_y", 8, 1), ("unit3_y", 4, 3), ("unit4_y", 8, 3)]
    assert [n.op for n in g.nodes] == ["input", "conv", "relu", "conv", "conv", "relu", "conv", "relu"]
    chain = ["x", "unit1_y", "unit1_relu1", "unit2_y", "unit3_y", "unit3_relu1", "unit4_y", "unit4_relu1"]
    assert g.output == chain[-1]   # each layer reads the one before it, back to the input
    assert [(n.name, n.inputs) for n in g.nodes] == [("x", ())] + [(b, (a,)) for a, b in zip(chain, chain[1:])]


def test_naming_rules() -> None:
    g = parse_graph("""
    model m() {
        input x: [3, 8, 8]
        stem = x -> conv(4, 3) -> bn
        head = stem -> relu
        output head -> flatten -> linear(2)
    }
    """)
    assert [n.name for n in g.nodes] == ["x", "stem_conv1", "stem_bn1", "head", "flatten1", "linear1"]


def test_repeat_and_defaults_referring_to_earlier_parameters() -> None:
    g = parse_graph("""
    block b(c, mid = c // 2) { input x  output x -> conv(mid, 1) -> conv(c, 1) }
    model m(n = 3) { input x: [4, 4, 4]  output x -> b(8) * n }
    """)
    assert [n.attrs["channels"] for n in g.nodes if n.op == "conv"] == [4, 8] * 3


def test_model_parameters_can_be_overridden() -> None:
    result = compile_source("model m(k = 10) { input x: [4]  output x -> linear(k) }", k=3)
    assert result.summary["output_shape"] == [3]


def test_repeat_zero_is_identity_and_tuples_merge() -> None:
    g = parse_graph("""
    model m() { input x: [2, 4, 4]
        y = x -> relu * 0
        output (x, y -> sigmoid, x) -> concat }
    """)
    concat = g.output_node
    assert concat.op == "concat" and concat.inputs == ("x", "sigmoid1", "x")


def test_select_and_integer_arithmetic() -> None:
    g = parse_graph("""
    model m(a = 7) { input x: [1, 8, 8]
        output x -> conv(select(a % 2 == 1, a ** 2, 1), max(1, a // 3), padding=min(a, 0)) }
    """)
    conv = g.output_node
    assert (conv.attrs["channels"], conv.attrs["kernel"], conv.attrs["padding"]) == (49, 2, 0)


ERRORS = [
    # (source, line, column, words in the message)
    ("model m() { input x: [1, 8, 8]\n output x -> rleu }", 2, 14, "hint: did you mean 'relu'?"),
    ("model m() { input x: [1, 8, 8]\n output x -> conv(4, kernal=3) }", 2, 14,
     "no argument 'kernal'; did you mean 'kernel'"),
    ("model m() { input x: [1, 8, 8]\n output x -> conv(4, 3.5) }", 2, 14, "must be an integer"),
    ("model m() { input x: [1, 8, 8]\n output x -> conv(true) }", 2, 14, "must be a number"),
    ("model m() { input x: [1, 8, 8]\n output x -> conv(4, bias=1) }", 2, 14, "must be true or false"),
    ("model m() { input x: [8]\n output x -> linear }", 2, 14, "needs argument 'features'"),
    ("model m() { input x: [1, 8, 8]\n output y -> relu }", 2, 9, "undefined value 'y'"),
    ("model m() { input x: [1, 8, 8]\n output x -> conv(c) }", 2, 19, "undefined name 'c'"),
    ("model m() { input x: [1, 8, 8]\n a = b -> relu\n b = a -> relu\n output b }", 2, 6, "used before it is defined"),
    ("block a() { input x output x -> b }\nblock b() { input x output x -> a }\n"
     "model m() { input x: [1,2,2] output x -> a }", 2, 33, "cycle (a -> b -> a)"),
    ("block b() { input x output x }\nblock b() { input x output x }\nmodel m() { input x: [1,2,2] output x -> b }",
     2, 7, "defined twice"),
    ("model m(c, c) { input x: [1, 8, 8] output x }", 1, 12, "declared twice"),
    ("model m() { input x: [1, 8, 8]\n x = x -> relu }", 1, 7, "no 'output'"),
    ("model m() { input x: [1, 8, 8]\n output x -> add }", 2, 14, "merges two or more values"),
    ("model m() { input x: [1, 8, 8]\n output (x, x) -> relu }", 2, 19, "takes 1 input(s), got 2"),
    ("model m() { input x: [1, 8, 8]\n output (x, x) }", 2, 9, "never merged"),
    ("model m() { input x\n output x }", 1, 13, "needs a shape"),
    ("model m() { input x: [1, 0, 8]\n output x }", 1, 26, "positive integers"),
    ("block b(c) { input x output x -> conv(c) }\nmodel m() { input x: [1, 8, 8]\n output x -> b(4, c=5) }",
     3, 19, "given twice"),
    ("block b(c) { input x output x -> conv(c) }\nmodel m() { input x: [1, 8, 8]\n output x -> b(d=4) }",
     3, 16, "no parameter 'd'"),
    ("model m() { input x: [1, 8, 8]\n output x -> conv(4 // 0) }", 2, 24, "division by zero"),
    ("model m() { input x: [1, 8, 8]\n relu = x -> sigmoid\n output relu }", 2, 2, "names an op"),
    ("model m() { input x: [1, 8, 8]\n output x -> [relu | sigmoid] }", 2, 14, "search space"),
    ("model m() { input x: [1, 8, 8]\n output x\n y = x -> relu }", 3, 2, "after 'output'"),
    ("model m() { input x: [1, 8, 8]\n if 3 { x = x -> relu }\n output x }", 2, 5, "true or false"),
    ("model a() { input x: [1, 2, 2] output x }\nmodel b() { input x: [1, 2, 2] output x }", 2, 7, "one model"),
    ("block b() { input x output x }", 0, 0, "no model"),
]


@pytest.mark.parametrize("text, line, col, words", ERRORS, ids=[e[3][:30] for e in ERRORS])
def test_user_errors_are_located(text: str, line: int, col: int, words: str) -> None:
    with pytest.raises(ArchError) as info:
        compile_source(text, "bad.arch")
    err = info.value
    assert words in str(err)
    if line:
        assert (err.span.line, err.span.column) == (line, col), str(err)
        assert str(err).startswith(f"bad.arch:{line}:{col}: error: ")
        assert "^" in str(err)


def test_errors_inside_blocks_name_the_instantiation() -> None:
    text = ("block b(c) { input x\n output x -> conv(c, 9, padding=0) }\n"
            "model m() { input x: [1, 4, 4]\n output x -> b(2) }")
    with pytest.raises(ArchError) as info:
        compile_source(text, "blk.arch")
    err = info.value
    assert (err.span.line, err.span.column) == (2, 14)
    assert "inside block 'b' used at blk.arch:4:14" in str(err)


def test_unknown_model_parameter_override() -> None:
    with pytest.raises(ArchError) as info:
        compile_source("model m(num_classes = 3) { input x: [4] output x -> linear(num_classes) }", classes=2)
    assert "did you mean 'num_classes'" in str(info.value)


def test_input_shape_override() -> None:
    from compiler import CompileOptions
    text = "model m() { input x: [3, 32, 32] output x -> conv(4, 3) -> global_avgpool -> flatten -> linear(2) }"
    result = compile_source(text, options=CompileOptions(input_shape=(1, 8, 8)))
    assert result.summary["input_shape"] == [1, 8, 8]
    assert result.graph.node("conv1").meta["input_shapes"] == ((1, 8, 8),)


def test_numbered_names_stay_readable_when_the_base_ends_in_a_digit() -> None:
    text = """
block conv1x1(c) { input x
    output x -> conv(c, 1) }
model m() {
    input x: [2, 4, 4]
    output x -> conv1x1(2) -> conv1x1(2)
}"""
    names = [n.name for n in compile_source(text).graph.nodes]
    assert names == ["x", "conv1x1_1_conv1", "conv1x1_2_conv1"]  # not conv1x11_conv1, conv1x12_conv1
