"""The grammar and the parser: every construct parses to the right AST; syntax errors are located and friendly."""
from __future__ import annotations

import pytest

from compiler.errors import ArchError
from compiler.frontend import ast
from compiler.frontend.parser import parse


def _model(text: str) -> ast.Definition:
    return next(d for d in parse(text, "t.arch").definitions if d.kind == "model")


def test_all_constructs_parse_to_the_expected_ast() -> None:
    m = _model("""
    # a comment
    block b(c, k = 3) {
        input x
        output x -> conv(c, k) # trailing comment
    }
    model net(n = 10) {
        input x: [3, 32, 32]
        let w = 16 * 2 // 4 - -1
        y = x -> b(w) * 2 -> [conv(8, 3) | identity] as op1
        for i in range(1, 3) { y = y -> b(w, k=select(i == 1, 3, 5)) }
        if n > 5 and not false { y = (y, y -> relu) -> add } else { y = y }
        output y -> flatten -> linear([10 | 20])
    }
    """)
    assert m.name == "net" and m.params[0].name == "n" and m.params[0].default == ast.Literal(10)
    inp, let, assign, loop, cond, out = m.body
    assert inp == ast.InputStmt(("x",), (ast.Literal(3), ast.Literal(32), ast.Literal(32)))
    assert let.value == ast.BinOp("-", ast.BinOp("//", ast.BinOp("*", ast.Literal(16), ast.Literal(2)),
                                                   ast.Literal(4)), ast.UnaryOp("-", ast.Literal(1)))
    layer0, layer1 = assign.flow.layers
    assert layer0.target.func == "b" and layer0.repeat == ast.Literal(2)
    assert isinstance(layer1.target, ast.Choice) and layer1.target.label == "op1"
    assert [type(o).__name__ for o in layer1.target.options] == ["Call", "Name"]
    assert loop.var == "i" and loop.start == ast.Literal(1) and loop.stop == ast.Literal(3)
    assert cond.condition.op == "and" and cond.otherwise[0].target == "y"
    assert isinstance(cond.then[0].flow.sources, tuple) and len(cond.then[0].flow.sources) == 2
    linear = out.flow.layers[1].target
    assert isinstance(linear.args[0].value, ast.Choice)


def test_spans_point_at_the_source() -> None:
    m = _model("model m() {\n  input x: [1, 4, 4]\n  y = x -> relu\n  output y\n}")
    assign = m.body[1]
    assert (assign.span.line, assign.span.column) == (3, 3)
    assert (assign.flow.layers[0].span.line, assign.flow.layers[0].span.column) == (3, 12)


def test_floats_and_scientific_literals() -> None:
    m = _model("model m() { input x: [1, 2, 2]\n output x -> bn(eps=1e-3, momentum=.5) -> scale(1/9) }")
    bn = m.body[1].flow.layers[0].target
    assert [a.value.value for a in bn.args] == [1e-3, 0.5]


@pytest.mark.parametrize("text, line, col, words", [
    ("model m() { input x: [1,2,2]\n output x -> relu relu }", 2, None, "missing '->'"),
    ("model m() { input x: [1,2,2]\n output x -> relu $ }", 2, 19, "unexpected character '$'"),
    ("model m() { input x: [1,2,2]\n output x -> conv(1, 2 }", 2, None, "unclosed '('"),
    ("model m() { input x: [1,2,2]\n output x", 2, None, "unclosed '{'"),
    ("model m() { input x: [1,2,2]\n y = relu(1)\n output y }", 2, None, "must start from a value"),
    ("model m( { }", 1, 10, "syntax error"),
])
def test_syntax_errors_are_located_and_friendly(text: str, line: int, col: int | None, words: str) -> None:
    with pytest.raises(ArchError) as info:
        parse(text, "bad.arch")
    err = info.value
    assert err.span.file == "bad.arch" and err.span.line == line
    if col is not None:
        assert err.span.column == col
    assert words in str(err)
    rendered = str(err)
    assert rendered.startswith(f"bad.arch:{line}:") and ": error: syntax error" in rendered
    assert "^" in rendered  # the caret under the source line


def test_contextual_keywords_may_be_value_names() -> None:
    # Lark's contextual lexer lets a keyword stand where only a name can; codegen renames it (see test_safety).
    m = _model("model m() { input input: [1, 2, 2] output input }")
    assert m.body[0].names == ("input",) and m.body[1].flow.sources == "input"


def test_unicode_identifiers_are_rejected_with_location() -> None:
    with pytest.raises(ArchError) as info:
        parse("model m() { input x: [1,2,2]\n ÿ = x -> relu\n output x }", "u.arch")
    assert info.value.span.line == 2 and "unexpected character" in info.value.message
