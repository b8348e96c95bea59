"""Generated code is not an injection path: only validated identifiers and numeric literals reach it."""
from __future__ import annotations

import ast as pyast
import keyword
from pathlib import Path

import pytest

from compiler import ArchError, compile_source
from compiler.api import read_source
from compiler.backends.names import python_name

HOSTILE_SOURCES = [
    'model m() { input x: [1, 4, 4]\n y = x -> relu\n "__import__(\'os\').system(\'echo pwned\')" }',
    "model m() { input x: [1, 4, 4]\n y\n= x -> relu\noutput y }\n__import__('os')",
    "model m() { input x: [1, 4, 4]\n output x -> conv('3') }",
    "model m() { input x: [1, 4, 4]\n output x -> conv(3); import os }",
    "model m() { input x: [1, 4, 4]\n output x -> scale(1e999) }",
]


@pytest.mark.parametrize("text", HOSTILE_SOURCES)
def test_hostile_text_is_rejected_with_a_location(text: str) -> None:
    with pytest.raises(ArchError) as info:
        compile_source(text, "evil.arch")
    assert str(info.value).startswith("evil.arch:")


NAMES = ["self", "torch", "nn", "class", "def", "lambda", "None", "True", "print", "__import__", "__init__",
         "forward", "training", "parameters", "build_model", "INPUT_SHAPE", "_private", "__dunder__", "x" * 300,
         "input", "for", "model", "range"]


@pytest.mark.parametrize("name", NAMES)
def test_hostile_value_names_compile_to_safe_python(name: str) -> None:
    text = (f"model {name}() {{ input {name}: [2, 4, 4]\n {name}2 = {name} -> relu\n"
            f" {name}3 = {name}2 -> conv(2, 1)\n output {name}3 }}")
    result = compile_source(text, "names.arch")   # every one is accepted (keywords too): the backends rename them
    tree = pyast.parse(result.source)
    imports = [n for n in pyast.walk(tree) if isinstance(n, (pyast.Import, pyast.ImportFrom))]
    assert {(getattr(n, "module", None), tuple(a.name for a in n.names)) for n in imports} == \
        {(None, ("torch",)), ("torch", ("nn",))}
    attrs = [n.attr for n in pyast.walk(tree) if isinstance(n, pyast.Attribute)
             and isinstance(n.value, pyast.Name) and n.value.id == "self"]
    assert attrs and all(not a.startswith("_") and len(a) <= 60 and not keyword.iskeyword(a) for a in attrs)
    model = result.build()
    import torch
    out = model(torch.randn(1, 2, 4, 4))
    assert out.shape == (1, 2, 4, 4)
    assert "pwned" not in result.source


def test_python_keywords_as_layer_names_compile_with_a_trailing_underscore() -> None:
    # the grammar accepts them (Lark's contextual lexer); the IR keeps them, the backends rename them
    text = ("model kw() { input x: [1, 8, 8]\n class = x -> conv(4, 3) -> relu\n def = class -> conv(4, 3)\n"
            " lambda = (class, def) -> add\n output lambda -> global_avgpool -> flatten -> linear(3) }")
    result = compile_source(text, "kw.arch")
    assert {"def", "lambda"} <= {n.name for n in result.graph.nodes}
    tree = pyast.parse(result.source)
    attrs = {n.attr for n in pyast.walk(tree) if isinstance(n, pyast.Attribute)
             and isinstance(n.value, pyast.Name) and n.value.id == "self"}
    assert {"class_conv1", "def_"} <= attrs
    import torch
    assert result.build()(torch.randn(2, 1, 8, 8)).shape == (2, 3)


def test_python_name_is_unique_valid_and_reserved_aware() -> None:
    used: set[str] = set()
    names = [python_name(n, used) for n in ["a-b", "a_b", "9lives", "forward", "self", "__class__", "ü", "a_b"]]
    assert len(set(names)) == len(names)
    assert all(n.isidentifier() and not keyword.iskeyword(n) and not n.startswith("_") for n in names)
    assert names[3] == "forward_" and names[4] == "self_"


def test_float_literals_are_emitted_exactly() -> None:
    result = compile_source("model m() { input x: [4] output x -> scale(1/9) }")
    assert repr(1 / 9) in result.source
    assert result.graph.output_node.attrs["factor"] == 1 / 9


@pytest.mark.parametrize("data, line, column", [
    (b"model m() {\n    input x: [1, 8, 8]  # caf\xe9\n    output x\n}\n", 2, 30),      # Latin-1
    (b"\xef\xbb\xbfmodel \xe9() {\n}\n", 1, 7),                                    # after a byte order mark
    (b"model m() {\n  # \xc3\xa9t\xc3\xa9 \xff\n}\n", 2, 9),                       # after valid UTF-8
])
def test_a_file_that_is_not_utf8_is_a_located_error(tmp_path: Path, data: bytes, line: int, column: int) -> None:
    path = tmp_path / "bad.arch"
    path.write_bytes(data)
    with pytest.raises(ArchError) as info:
        read_source(path)
    assert (info.value.span.line, info.value.span.column) == (line, column)
    assert str(info.value).startswith(f"{path}:{line}:{column}: error: not UTF-8 text: byte 0x")
    assert "save the file as UTF-8" in str(info.value)
