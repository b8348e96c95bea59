"""The passes one by one on small hand-built graphs (IR in -> expected IR), and the pass manager and pipeline:
passes by name, the default list, refused lists, the failing pass named, debug verification between passes.
(simplify and dce have their own files: test_simplify.py, test_dce.py.)"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest

from compiler import CompileOptions, compile_source
from compiler.errors import ArchError
from compiler.ir.graph import Graph, Node, frozen
from compiler.passes.analyse import AnalyseCosts
from compiler.passes.base import PassError, PassManager
from compiler.passes.pipeline import DEFAULT_PASSES, PASSES, build_pipeline, check_passes
from compiler.passes.shapes import InferShapes
from compiler.passes.verify import Verify, verify
from conftest import run_cli

CONV = dict(channels=4, kernel=3, stride=2, padding=1, dilation=1, groups=1, bias=False)


def _n(name: str, op: str, *inputs: str, meta: dict | None = None, **attrs: object) -> Node:
    return Node(name, op, tuple(inputs), frozen(attrs), meta=frozen(meta or {}))


def _small() -> Graph:
    return Graph("g", (_n("x", "input", shape=(3, 8, 8)), _n("c", "conv", "x", **CONV), _n("r", "relu", "c"),
                       _n("f", "flatten", "r"), _n("l", "linear", "f", features=10, bias=True)), "l")


# ---- verify ------------------------------------------------------------------------------------
def test_verify_passes_a_valid_graph_through_unchanged() -> None:
    graph = _small()
    assert Verify().apply(graph) is graph


@pytest.mark.parametrize("nodes, output, message", [
    ((_n("x", "input", shape=(3,)), _n("r", "relu", "y"), _n("y", "relu", "x")), "r", "uses 'y' before it is computed"),
    ((_n("x", "input", shape=(3,)), _n("r", "relu", "x"), _n("r", "tanh", "x")), "r", "duplicate node name 'r'"),
    ((_n("x", "input", shape=(3,)), _n("r", "frobnicate", "x")), "r", "unregistered op 'frobnicate'"),
    ((_n("x", "input", shape=(3,)), _n("a-b", "relu", "x")), "a-b", "'a-b' is not a valid identifier"),
    ((_n("x", "input", shape=(3,)), _n("r", "relu", "x")), "nowhere", "graph output 'nowhere' is not a node"),
    ((_n("r", "relu", "r"),), "r", "uses 'r' before it is computed"),
])
def test_verify_refuses_broken_invariants(nodes: tuple[Node, ...], output: str, message: str) -> None:
    with pytest.raises(ArchError, match=message):
        Verify().apply(Graph("g", nodes, output))


# ---- infer_shapes ------------------------------------------------------------------------------
def test_infer_shapes_writes_each_nodes_shape_and_its_inputs_shapes() -> None:
    after = InferShapes().apply(_small())
    assert after == _small()  # the same network: only meta changes
    assert {n.name: n.shape for n in after.nodes} == {"x": (3, 8, 8), "c": (4, 4, 4), "r": (4, 4, 4), "f": (64,),
                                                      "l": (10,)}
    assert after.node("c").meta["input_shapes"] == ((3, 8, 8),) and after.node("l").meta["input_shapes"] == ((64,),)


def test_infer_shapes_locates_a_mismatch_at_the_node() -> None:
    graph = Graph("g", (_n("x", "input", shape=(3, 8, 8)), _n("l", "linear", "x", features=10, bias=True)), "l")
    with pytest.raises(ArchError, match=r"shape error: 'linear' expects a flat \[features\] input, got \[3, 8, 8\]"):
        InferShapes().apply(graph)


# ---- analyse -----------------------------------------------------------------------------------
def test_analyse_counts_parameters_and_macs_per_node_and_in_total() -> None:
    after = AnalyseCosts().apply(InferShapes().apply(_small()))
    conv_params, conv_macs = 4 * 3 * 9, 4 * 4 * 4 * 3 * 9         # bias=False; output 4x4x4
    linear_params, linear_macs = 64 * 10 + 10, 64 * 10
    assert {n.name: (n.meta["params"], n.meta["macs"]) for n in after.nodes} == {
        "x": (0, 0), "c": (conv_params, conv_macs), "r": (0, 0), "f": (0, 0), "l": (linear_params, linear_macs)}
    assert after.meta["params"] == conv_params + linear_params and after.meta["macs"] == conv_macs + linear_macs
    # fresh tensors of one forward pass: conv, relu and linear (flatten is a view, the input is the caller's)
    assert after.meta["activation_elements"] == 64 + 64 + 10
    assert after.meta["inference_params"] == after.meta["params"]


def test_analyse_leaves_auxiliary_heads_out_of_the_inference_totals() -> None:
    graph = Graph("g", (_n("x", "input", shape=(8,)), _n("l", "linear", "x", features=2, bias=False),
                        _n("h", "linear", "x", features=3, bias=False)), "l", aux_outputs=(("aux", "h"),))
    after = AnalyseCosts().apply(InferShapes().apply(graph))
    assert (after.meta["params"], after.meta["inference_params"]) == (8 * 2 + 8 * 3, 8 * 2)


# ---- the pipeline ------------------------------------------------------------------------------
def test_the_default_pipeline_is_the_documented_one() -> None:
    assert DEFAULT_PASSES == ("verify", "dce", "infer_shapes", "simplify", "dce", "analyse")
    assert CompileOptions().passes == DEFAULT_PASSES
    assert [p.name for p in build_pipeline().passes] == list(DEFAULT_PASSES)
    assert sorted(PASSES) == ["analyse", "dce", "infer_shapes", "simplify", "verify"]


def test_a_shorter_pipeline_compiles_without_the_passes_left_out() -> None:
    text = "model m() { input x: [2, 4, 4]\n y = x -> identity\n output (y, x -> zero) -> add -> relu }"
    full = compile_source(text)
    assert [n.op for n in full.graph.nodes] == ["input", "relu"]
    plain = compile_source(text, options=CompileOptions(passes=["infer_shapes", "analyse"]))
    assert [n.op for n in plain.graph.nodes] == ["input", "identity", "zero", "add", "relu"]
    assert "mul(0.0)" in plain.source and "mul(0.0)" not in full.source


@pytest.mark.parametrize("passes, message, hint", [
    (["verify", "shapes"], "unknown pass 'shapes'", "did you mean 'infer_shapes'?"),
    (["verify", 3], "unknown pass 3", "the passes are verify, dce, infer_shapes, simplify, analyse"),
    ("dce", "passes must be a list of pass names, got 'dce'", "the default is [verify,dce,infer_shapes"),
    (["verify", "simplify", "infer_shapes", "analyse"], "pass 'simplify' (number 2) needs shapes, which no pass "
     "before it provides", "put 'infer_shapes' before it"),
    (["verify", "dce"], "the passes leave the IR without shapes and costs, which code generation needs",
     "end the list with 'infer_shapes' and 'analyse'"),
    (["infer_shapes", "analyse", "simplify"], "the passes leave the IR without costs", "end the list with 'analyse'"),
])
def test_a_pipeline_that_cannot_work_is_refused(passes: object, message: str, hint: str) -> None:
    with pytest.raises(ArchError) as err:
        CompileOptions(passes=passes)  # type: ignore[arg-type]
    assert err.value.message == message or err.value.message.startswith(message)
    assert hint in (err.value.hint or "") and str(err.value).startswith("passes: error: ")
    with pytest.raises(ArchError):
        check_passes(passes)


def test_passes_from_the_command_line(tmp_path) -> None:
    arch = tmp_path / "m.arch"
    arch.write_text("model m() { input x: [2, 4, 4]\n output x -> identity -> relu }")
    proc = run_cli(f"arch={arch}", f"out_dir={tmp_path / 'a'}", "passes=[infer_shapes,analyse]")
    assert proc.returncode == 0, proc.stderr
    assert "identity" in (tmp_path / "a" / "arch.arch").read_text()
    proc = run_cli(f"arch={arch}", f"out_dir={tmp_path / 'b'}", "passes=[verify,infer_shape,analyse]")
    assert proc.returncode == 2 and proc.stderr.startswith("passes: error: unknown pass 'infer_shape'")
    assert "Traceback" not in proc.stderr


# ---- the pass manager --------------------------------------------------------------------------
@dataclass(frozen=True)
class _Crash:
    name: ClassVar[str] = "crash"
    requires: ClassVar[tuple[str, ...]] = ()
    provides: ClassVar[tuple[str, ...]] = ()
    invalidates: ClassVar[tuple[str, ...]] = ()

    def apply(self, graph: Graph) -> Graph:
        return {}["missing"]  # a bug


@dataclass(frozen=True)
class _Refuse:
    name: ClassVar[str] = "refuse"
    requires: ClassVar[tuple[str, ...]] = ()
    provides: ClassVar[tuple[str, ...]] = ()
    invalidates: ClassVar[tuple[str, ...]] = ()

    def apply(self, graph: Graph) -> Graph:
        raise ArchError("not this one", graph.span)


@dataclass(frozen=True)
class _BreakOrder:
    """Returns a graph whose nodes are out of topological order: broken IR, not a user mistake."""
    name: ClassVar[str] = "break_order"
    requires: ClassVar[tuple[str, ...]] = ()
    provides: ClassVar[tuple[str, ...]] = ()
    invalidates: ClassVar[tuple[str, ...]] = ()

    def apply(self, graph: Graph) -> Graph:
        return graph.replace_nodes(tuple(reversed(graph.nodes)))


def test_a_failing_pass_is_named_in_the_error() -> None:
    with pytest.raises(ArchError) as err:
        PassManager([Verify(), _Refuse()]).run(_small(), "source text")
    assert err.value.stage == "refuse" and "(in pass 'refuse')" in str(err.value)
    with pytest.raises(PassError, match=r"internal error in pass 'crash': KeyError: 'missing'"):
        PassManager([Verify(), _Crash()]).run(_small())


def test_debug_mode_verifies_between_passes_and_names_the_pass_that_broke_the_ir() -> None:
    passes = [Verify(), _BreakOrder(), InferShapes()]
    with pytest.raises(ArchError) as err:
        PassManager(passes, debug=True, verifier=verify).run(_small())
    assert err.value.message.startswith("internal error: IR invalid after pass 'break_order': node ")
    # without debug the broken IR goes on to the next pass, which fails on it in its own way
    with pytest.raises(PassError, match="internal error in pass 'infer_shapes'"):
        PassManager(passes).run(_small())


def test_debug_option_turns_on_the_verification(monkeypatch) -> None:
    assert build_pipeline(debug=True).debug and not build_pipeline().debug
    checked: list[Graph] = []   # the graphs the pipeline's verifier saw (the verify pass calls its own)
    monkeypatch.setattr("compiler.passes.pipeline.verify", lambda g, registry: checked.append(g) or verify(g, registry))
    source = "model m() { input x: [3]\n output x -> relu }"
    result = compile_source(source, options=CompileOptions(debug=True))
    assert len(checked) == len(DEFAULT_PASSES) == 6 and checked[-1] is result.graph   # after every pass
    compile_source(source)
    assert len(checked) == 6   # without debug: not once
