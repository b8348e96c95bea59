"""The supernet backend: a space with its layer/input choices mixed (compiler/backends/supernet.py)."""
from __future__ import annotations

import ast
import dataclasses
import random
import re
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from compiler import ArchError, compile_source
from compiler.api import CompileOptions
from compiler.backends.names import TEMPLATE_NAMES as MODEL_TEMPLATE_NAMES
from compiler.backends.pytorch import template
from compiler.backends.supernet import NODE_COSTS
from compiler.backends.supernet import TEMPLATE_NAMES as SUPERNET_TEMPLATE_NAMES
from compiler.supernet import SupernetError, build_supernet
from compiler.space import load_space, load_space_file

ROOT = Path(__file__).resolve().parents[1]
SPACES = ROOT / "examples" / "spaces"

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


ONE_DECISION = """
model one(num_classes = 10) {
    input x: [1, 8, 8]
    x = x -> conv(8, 3) -> bn -> relu
    x = x -> [conv(8, 3) | sepconv(8, 5) | avgpool(3, stride=1, padding=1) | zero] as op
    output x -> global_avgpool -> flatten -> linear(num_classes)
}
"""


def _one_hot(supernet, choices):
    return [F.one_hot(torch.tensor(c), len(r.options)).float() for r, c in zip(supernet.relaxed, choices)]


def _same_function(space, supernet, genotype, x: torch.Tensor, extreme_logits: bool = False) -> tuple[float, float]:
    """Max |supernet - derived| (supernet weights inherited) and max |derived| on ``x``, both in eval mode."""
    model = supernet.build().eval()
    choices = supernet.choices(genotype)
    derived = space.compile(genotype).build().eval()
    derived.load_state_dict(supernet.inherit(model.state_dict(), genotype))  # strict: every tensor accounted for
    with torch.no_grad():
        if extreme_logits:  # the logits themselves, not given weights: softmax saturates to the option
            for alpha, c in zip(model.alphas, choices):
                alpha.fill_(-40.0)
                alpha[c] = 40.0
            mixed = model(x)
        else:
            mixed = model(x, weights=_one_hot(supernet, choices))
        plain = derived(x)
    return float((mixed - plain).abs().max()), float(plain.abs().max())


def test_one_decision_supernet_with_alpha_at_option_k_is_concretize_k() -> None:
    space = load_space(ONE_DECISION, "one.arch")
    supernet = build_supernet(space)
    assert [r.name for r in supernet.relaxed] == ["op"] and supernet.relaxed[0].sites == 1
    torch.manual_seed(0)
    x = torch.randn(4, 1, 8, 8)
    outputs = []
    for k in range(4):
        diff, scale = _same_function(space, supernet, (k,), x, extreme_logits=True)
        assert diff < 1e-6 * max(scale, 1.0), (k, diff)
        outputs.append(scale)
    assert len({round(o, 6) for o in outputs}) == 4  # the four options really compute different functions


@pytest.mark.parametrize("arch, params", [("nb201", {"channels": 4, "cells": 1}),
                                          ("darts", {"channels": 4, "layers": 3})])
def test_supernet_at_one_hot_weights_equals_the_derived_network(arch: str, params: dict) -> None:
    space = load_space_file(str(SPACES / f"{arch}.arch"), options=CompileOptions(input_shape=(1, 8, 8)),
                            in_channels=1, size=8, **params)
    supernet = build_supernet(space)
    rng = random.Random(0)
    torch.manual_seed(0)
    x = torch.randn(3, 1, 8, 8)
    for _ in range(3):
        genotype = supernet.genotype([rng.randrange(len(r.options)) for r in supernet.relaxed])
        diff, scale = _same_function(space, supernet, genotype, x)
        assert scale > 0 and diff <= 1e-6 * max(scale, 1.0)


def test_decisions_shared_by_several_cells_share_one_logits_vector() -> None:
    space = load_space_file(str(SPACES / "nb201.arch"), channels=4, cells=2)
    supernet = build_supernet(space)
    model = supernet.build()
    assert len(model.alphas) == 6 and [a.numel() for a in model.alphas] == [5] * 6
    assert [r.sites for r in supernet.relaxed] == [6] * 6          # 3 stages x 2 cells
    assert len(re.findall(r"mix\(weights\[0\]", supernet.source)) == 6
    # one gradient per decision, summed over its six sites
    F.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.tensor([1, 2])).backward()
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in model.alphas)
    arch = {id(p) for p in model.arch_parameters()}
    assert arch.isdisjoint(id(p) for p in model.weight_parameters())
    assert len(model.weight_parameters()) + 6 == len(list(model.parameters()))
    # the darts space: 14 normal and 14 reduction decisions, each shared by every cell of its kind
    darts = build_supernet(load_space_file(str(SPACES / "darts.arch"), channels=4, layers=5))
    sites = {r.name.split(".")[0]: r.sites for r in darts.relaxed}
    assert len(darts.relaxed) == 28 and sites == {"normal": 3, "reduce": 2}


def test_relaxed_input_choice_mixes_the_candidate_values() -> None:
    text = """
    model m() {
        input x: [1, 8, 8]
        a = x -> conv(4, 3)
        b = x -> conv(4, 1)
        c = ([a | b] as pick, a) -> add
        output c -> flatten -> linear(10)
    }
    """
    space = load_space(text, "m.arch")
    supernet = build_supernet(space)
    assert [(r.name, r.decision.kind, r.sites) for r in supernet.relaxed] == [("pick", "input", 1)]
    x = torch.randn(2, 1, 8, 8)
    for k in range(2):
        diff, scale = _same_function(space, supernet, (k,), x)
        assert diff < 1e-6 * max(scale, 1.0)


def test_options_of_different_shapes_are_a_located_error_naming_the_decision() -> None:
    text = ("model m() {\n"
            "    input x: [1, 8, 8]\n"
            "    y = x -> [conv(4, 3) | conv(4, 3, stride=2)] as op\n"
            "    output y -> flatten -> linear(10)\n"
            "}\n")
    space = load_space(text, "m.arch")
    with pytest.raises(ArchError) as info:
        build_supernet(space)
    message = str(info.value)
    assert message.startswith("m.arch:3:14: error: shape error: the options of a relaxed choice")
    assert "got [4, 8, 8] from option 1 and [4, 4, 4] from option 2" in message
    assert "decision 'op': conv(4, 3) | conv(4, 3, stride=2)" in message
    assert "[conv(4, 3) | conv(4, 3, stride=2)] as op" in message and "^~~" in message  # the line, the caret


def test_value_and_depth_decisions_must_be_fixed() -> None:
    space = load_space_file(str(SPACES / "digits.arch"))
    with pytest.raises(SupernetError) as info:
        build_supernet(space)
    err = info.value
    assert err.span is not None and err.span.line == 23  # `let w = [8 | 16 | 24] as width`
    for name in ("'width' (value: 8 | 16 | 24)", "'stage1_depth' (depth: 1 | 2)", "'stage2_widen' (value: 1 | 2)",
                 "'stage2_depth' (depth: 1 | 2)"):
        assert name in err.message
    assert "4 value/depth decision(s) must be fixed" in err.message and "search.fixed" in (err.hint or "")

    fixed = build_supernet(space, {"width": 16, "stage1_depth": "2", "stage2_widen": 1, "stage2_depth": 0})
    assert [r.name for r in fixed.relaxed] == ["stage1_block", "op", "stage2.op"]
    genotype = fixed.genotype([1, 3, 0])
    assert space.describe(genotype) == {"width": "16", "stage1_block": "unit(w)", "op": "dw_pw(channels)",
                                        "stage1_depth": "2", "stage2_widen": "1",
                                        "stage2.op": "conv(channels, 3, bias=false)", "stage2_depth": "1"}
    first = build_supernet(space, unrelaxed="first")
    assert space.describe(first.genotype([0, 0, 0]))["width"] == "8"
    # a fixed layer decision is not relaxed
    assert [r.name for r in build_supernet(space, {"op": "conv(channels, 5, bias=false)"},
                                           unrelaxed="first").relaxed] == ["stage1_block", "stage2.op"]


def test_bad_fixed_entries_are_clear_errors() -> None:
    space = load_space_file(str(SPACES / "digits.arch"))
    with pytest.raises(SupernetError, match="no decision 'widht'") as info:
        build_supernet(space, {"widht": 16}, unrelaxed="first")
    assert "did you mean 'width'" in (info.value.hint or "")
    with pytest.raises(SupernetError, match=r"decision 'width' has no option 32"):
        build_supernet(space, {"width": 32}, unrelaxed="first")


def test_per_option_costs_come_from_the_analysis_pass() -> None:
    space = load_space_file(str(SPACES / "nb201.arch"), channels=4, cells=1)
    supernet = build_supernet(space)
    assert supernet.relaxed[0].options == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    assert [r.zero for r in supernet.relaxed] == [(True, False, False, False, False)] * 6
    assert supernet.relaxed[0].param_free == (True, True, False, False, True)
    for metric in ("params", "macs"):
        costs = supernet.option_costs(NODE_COSTS[metric])
        base = [3, 2, 2, 2, 2, 2]   # any architecture: change decision 1 and compare compiled totals
        reference = space.compile(base).summary[metric]
        for k in range(5):
            other = list(base)
            other[1] = k
            delta = space.compile(other).summary[metric] - reference
            assert delta == costs[1][k] - costs[1][2], (metric, k)
    assert supernet.params == sum(sum(c) for c in supernet.option_costs(NODE_COSTS["params"])) \
        + supernet.cost_table(NODE_COSTS["params"])[()]


def test_generated_supernet_is_standalone_and_names_no_user_text(tmp_path: Path) -> None:
    space = load_space_file(str(SPACES / "nb201.arch"), channels=4, cells=1)
    supernet = build_supernet(space)
    imports = [line for line in supernet.source.splitlines() if line.startswith(("import", "from"))]
    assert imports == ["import torch", "from torch import nn"]
    assert "edge_1_0" not in supernet.source  # decision names stay on the Python side
    path = tmp_path / "supernet.py"
    path.write_text(supernet.source)
    import subprocess
    import sys
    run = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "torch.Size([2, 10])"


def test_building_a_supernet_checks_the_space_s_size_limits() -> None:
    options = CompileOptions(limits=dataclasses.replace(CompileOptions().limits, max_params=1000))
    supernet = build_supernet(load_space(ONE_DECISION, "one.arch", options=options))
    assert supernet.params > 1000
    with pytest.raises(ArchError, match=r"the model has [\d,]+ parameters .* too many to build"):
        supernet.build()


def _names_layers_could_meet(source: str) -> set[str]:
    """The names generated layers share a scope with: the module's globals, the model class's methods and attributes
    of self, and forward()'s arguments and variables (other functions' locals are their own)."""
    module = ast.parse(source)
    names: set[str] = set()
    for node in module.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    model = next(node for node in module.body if isinstance(node, ast.ClassDef))
    for method in model.body:
        if isinstance(method, ast.FunctionDef):
            names.add(method.name)
            for node in ast.walk(method):
                if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                    names.add(node.attr)
                elif method.name == "forward" and isinstance(node, ast.arg):
                    names.add(node.arg)
                elif method.name == "forward" and isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    names.add(node.id)
    return names


@pytest.mark.parametrize("name, reserved", [("supernet.py.j2", set(SUPERNET_TEMPLATE_NAMES) | MODEL_TEMPLATE_NAMES),
                                            ("model.py.j2", set(MODEL_TEMPLATE_NAMES))])
def test_every_name_a_template_defines_is_reserved_from_layers(name: str, reserved: set[str]) -> None:
    # rendered with no layers: what is left is the template's own code
    source = template(name).render(
        class_name="Net", model_name="net", params=0, macs=0, inference_params=0, arch_sizes=[2], edge_sizes=[2],
        input_shape=[3], output_shape=[3], module_lines=[], input_vars=["x"], forward_lines=[], skippable=[],
        result="x", example_inputs="torch.zeros(2, 3)", aux_outputs=[], aux_results=[])
    own = _names_layers_could_meet(source) - {"Net", "x", "self", "__init__", "forward"}
    assert own - reserved == set()


def test_layers_named_like_the_supernet_template_s_own_names_are_renamed() -> None:
    # a layer called `betas` used to replace the edge logits, one called `edge_weights` the method
    space = load_space(ONE_DECISION.replace("x = x -> conv(8, 3) -> bn -> relu",
                                            "betas = x -> conv(8, 3) -> bn -> relu\n"
                                            "    edge_weights = betas -> relu\n    EDGE_SIZES = edge_weights -> relu\n"
                                            "    x = EDGE_SIZES"), "one.arch")
    supernet = build_supernet(space, edge_norm=True)
    model = supernet.build()
    assert len(model.arch_parameters()) == 1 and model.arch_parameters()[0].shape == (4,)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_mixed_is_internal_to_the_compiler() -> None:
    with pytest.raises(ArchError, match="unknown op or block 'mixed'"):
        compile_source("model m() { input x: [3, 8, 8]\n output (x, x) -> mixed(0) }")
    assert compile_source("model m() { input x: [3, 8, 8]\n mixed = x -> relu\n output mixed }").graph.output == "mixed"
