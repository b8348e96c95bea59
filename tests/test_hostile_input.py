"""User mistakes that used to end in a Python traceback: each is now a located message (exit status 2 on the CLI).

Config mistakes are located at their key (`input_shape: error: ...`), mistakes in the file at FILE:LINE:COL.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from compiler import ArchError, CompileOptions, compile_file, compile_source
from compiler.ir.ops import REGISTRY, load_op_modules
from compiler.space import load_space
from search.tasks.common import compile_options, model_params
from conftest import run_cli

WIDTH_MODEL = "model m(width = 8) {\n  input x: [3, 8, 8]\n  output x -> conv(width * 2, 3)\n}\n"


def error_of(fn, *args, **kwargs) -> ArchError:  # noqa: ANN001
    with pytest.raises(ArchError) as info:
        fn(*args, **kwargs)
    return info.value


# ---- parameters and expressions ----------------------------------------------------------------------------
@pytest.mark.parametrize("value,expected", [("abc", "must be a number or true/false, got str 'abc'"),
                                            ([1, 2], "got list [1, 2]"), (None, "got NoneType None"),
                                            (float("inf"), "must be a finite number"),
                                            (2 ** 80, "too large (81 bits)")])
def test_a_bad_parameter_value_is_named_where_it_is_given(value: object, expected: str) -> None:
    err = error_of(compile_source, WIDTH_MODEL, "w.arch", width=value)
    assert str(err).startswith("params.width: error: parameter 'width'") and expected in str(err)


def test_config_params_are_checked() -> None:
    cfg = OmegaConf.create({"params": {"width": "abc"}})
    err = error_of(compile_source, WIDTH_MODEL, "w.arch", **model_params(cfg))
    assert str(err).startswith("params.width: error:")
    assert str(error_of(model_params, OmegaConf.create({"params": 3}))).startswith("params: error:")


@pytest.mark.parametrize("expr,message,column", [
    ("(-8) ** 0.5", "complex number", 11),
    ("(0 - 8.0) ** 0.25", "complex number", 11),
    ("0 ** -1", "division by zero", 11),
    ("0.0 ** -1", "division by zero", 11),
    ("int(1e300)", "max_int_bits", 11),
    ("max()", "bad call to max()", 11),
    ("make_divisible(1e300, 1e-300)", "make_divisible() gives a non-finite number", 11),
])
def test_expressions_that_leave_the_real_numbers_are_refused_where_they_are(expr: str, message: str,
                                                                            column: int) -> None:
    text = f"model m() {{\n  input x: [3, 8, 8]\n  let a = {expr}\n  if a > 1 {{ x = x -> relu }}\n  output x\n}}"
    err = error_of(compile_source, text, "e.arch")
    assert (err.span.line, err.span.column) == (3, column) and message in str(err), str(err)


@pytest.mark.parametrize("literal,message", [("1e999", "too large for a float"),
                                             ("9" * 30, "integer literal of 30 digits"),
                                             ("0" * 5000 + "7", None)])
def test_literals_out_of_range(literal: str, message: str | None) -> None:
    text = f"model m() {{\n  input x: [3, 8, 8]\n  let a = {literal}\n  output x\n}}"
    if message is None:  # leading zeros are not digits of the value
        assert compile_source(text).graph.name == "m"
        return
    err = error_of(compile_source, text, "l.arch")
    assert err.span.line == 3 and message in err.message


# ---- configuration -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", ["abc", 3, [], ["abc", 8, 8], [0, 8, 8], [3.5, 8, 8], [True, 8, 8]])
def test_a_bad_input_shape_is_named(shape: object) -> None:
    err = error_of(compile_options, OmegaConf.create({"input_shape": shape}))
    assert str(err).startswith("input_shape: error: input_shape must be")
    err = error_of(CompileOptions, input_shape=shape)
    assert err.span.file == "input_shape"


def test_input_shape_from_the_config_is_used() -> None:
    options = compile_options(OmegaConf.create({"input_shape": [3, 16, 16]}))
    assert options.input_shape == (3, 16, 16)
    assert compile_source(WIDTH_MODEL, options=options).graph.output_node.shape == (16, 16, 16)


@pytest.mark.parametrize("ops,message", [([""], "'' , which"), ([".relative"], "'.relative'"), ([3], "3, which"),
                                         (["os;rm"], "'os;rm'"), (["no_such_module_xyz"], "cannot import op module"),
                                         (["a..b"], "'a..b'")])
def test_bad_op_module_names_are_named(ops: list[object], message: str) -> None:
    err = error_of(load_op_modules, ops)
    assert str(err).startswith("ops: error:") and message.replace(" , ", ", ") in str(err), str(err)


def test_an_op_module_given_as_one_string_is_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    import examples
    name = "examples.custom_ops"   # imported afresh into a registry without its ops; all of it put back after
    monkeypatch.setattr(REGISTRY, "_ops", {op: spec for op, spec in REGISTRY._ops.items() if spec.module != name})
    monkeypatch.setitem(sys.modules, name, None)   # teardown puts the module back, or removes it if it was not there
    monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(examples, "custom_ops", None, raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert "channel_shuffle" not in REGISTRY
    load_op_modules(name)  # ops=examples.custom_ops, without brackets
    assert sys.modules[name] is examples.custom_ops and REGISTRY["channel_shuffle"].module == name
    shuffle = compile_source("model m() { input x: [4, 2, 2]\n output x -> channel_shuffle(2) }").graph.output_node
    assert (shuffle.op, shuffle.attrs["groups"], shuffle.shape) == ("channel_shuffle", 2, (4, 2, 2))


def test_limits_from_the_config() -> None:
    options = compile_options(OmegaConf.create({"limits": {"max_layers": 3}}))
    err = error_of(compile_source, WIDTH_MODEL.replace("conv(width * 2, 3)", "relu -> relu -> relu"), "l.arch",
                   options=options)
    assert "max_layers" in err.message
    assert str(error_of(compile_options, OmegaConf.create({"limits": {"max_layers": "x"}}))).startswith(
        "limits.max_layers: error:")


@pytest.mark.parametrize("override,starts", [  # the rest of each class is tested in-process above
    ("input_shape=[abc,8,8]", "input_shape: error:"), ('ops=[""]', "ops: error:"),
    ("+params.width=abc", "params.width: error:"), ("limits.max_depth=-1", "limits.max_depth: error:"),
])
def test_config_mistakes_on_the_command_line_exit_2_without_a_traceback(tmp_path: Path, override: str,
                                                                        starts: str) -> None:
    arch = tmp_path / "w.arch"
    arch.write_text(WIDTH_MODEL)
    proc = run_cli(f"arch={arch}", f"out_dir={tmp_path / 'out'}", override, timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith(starts), proc.stderr
    assert "Traceback" not in proc.stderr


# ---- whole files -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["", "   \n\n", "# only a comment\n", "\ufeff", "\ufeff# bom and comment\n"])
def test_a_file_without_a_model_is_named_and_located(text: str, tmp_path: Path) -> None:
    err = error_of(compile_source, text, "empty.arch")
    assert str(err).startswith("empty.arch:1:1: error: no model in this file")
    path = tmp_path / "empty.arch"
    path.write_text(text, encoding="utf-8")
    assert str(error_of(compile_file, path)).startswith(f"{path}:1:1: error: no model in this file")
    assert str(error_of(load_space, text, "empty.arch")).startswith("empty.arch:1:1: error: no model")


def test_a_byte_order_mark_is_accepted_and_columns_stay_right(tmp_path: Path) -> None:
    good = "model m() { input x: [3, 8, 8]\n output x -> relu }\n"
    path = tmp_path / "bom.arch"
    path.write_bytes(b"\xef\xbb\xbf" + good.encode())
    assert compile_file(path).graph == compile_source(good).graph
    assert compile_source("\ufeff" + good).graph == compile_source(good).graph
    bad = "model m() { input x: [3, 8, 8] output y }\n"
    plain, with_bom = error_of(compile_source, bad, "b.arch"), error_of(compile_source, "\ufeff" + bad, "b.arch")
    assert (with_bom.span.line, with_bom.span.column) == (plain.span.line, plain.span.column) == (1, 39)
    assert str(with_bom) == str(plain)  # the quoted line and caret too


def test_form_feeds_and_unicode_line_separators_do_not_shift_quoted_lines() -> None:
    text = "# a \x0c form feed and a \u2028 separator\nmodel m() { input x: [3, 8, 8]\n output y }\n"
    err = error_of(compile_source, text, "f.arch")
    assert err.span.line == 3 and str(err).splitlines()[1].strip() == "output y }"


def test_long_lines_are_quoted_around_the_caret() -> None:
    text = "model m() { input x: [3, 8, 8]\n output x -> " + "relu -> " * 100 + "nosuchop }\n"
    err = str(error_of(compile_source, text, "long.arch"))
    quoted, caret = err.splitlines()[1:3]
    assert len(quoted) < 120 and quoted.strip().startswith("...") and "nosuchop" in quoted
    assert quoted[caret.index("^"):].startswith("nosuchop")


@pytest.mark.parametrize("layer,message", [("dropout(1.5)", "must be <= 1"), ("bn(eps=0)", "must be >= 1e-12")])
def test_op_arguments_torch_would_reject_at_build_are_refused_at_compile(layer: str, message: str) -> None:
    err = error_of(compile_source, f"model m() {{\n  input x: [3, 8, 8]\n  output x -> {layer}\n}}", "a.arch")
    assert (err.span.line, err.span.column) == (3, 15) and message in err.message
