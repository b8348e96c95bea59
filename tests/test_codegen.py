"""The PyTorch backend: golden file, exec-and-compare, determinism, safe in-place ops, imports, readable calls.

The golden file tests/golden/small_net.py is the exact source generated for tests/golden/small_net.arch. After an
intended change to the generated code, regenerate it and review the diff:

    UPDATE_GOLDEN=1 pytest tests/test_codegen.py -k golden
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import compiler
from compiler.api import load_source
from compiler.backends.pytorch import in_place_nodes
from compiler.backends.lowerings import nn_call

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden"
SMALL_NET = GOLDEN / "small_net.arch"


@pytest.fixture(scope="module")
def small_net() -> compiler.CompileResult:
    return compiler.compile_file(SMALL_NET)


# ---- golden file -------------------------------------------------------------------------------------------
def test_golden_source(small_net: compiler.CompileResult) -> None:
    golden = GOLDEN / "small_net.py"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(small_net.source)
    assert small_net.source == golden.read_text(), \
        "generated source changed; if intended, regenerate with UPDATE_GOLDEN=1 (see this file's docstring)"


# ---- exec and compare with a hand-written module -------------------------------------------------------------
class HandWritten(nn.Module):
    """small_net.arch written by hand, out of place everywhere; parameters registered in the same order."""

    def __init__(self) -> None:
        super().__init__()
        self.stem_conv = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(8, eps=1e-3, momentum=0.01)
        self.res_conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.res_bn1 = nn.BatchNorm2d(8)
        self.res_conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.res_bn2 = nn.BatchNorm2d(8)
        self.gate_conv = nn.Conv2d(8, 8, 1)
        self.pre_conv = nn.Conv2d(8, 8, 1)
        self.pre_bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.25)
        self.fc = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem_bn(self.stem_conv(x)))
        y = self.res_bn2(self.res_conv2(F.relu(self.res_bn1(self.res_conv1(x)))))
        body = F.relu(y + x)
        gate = torch.sigmoid(self.gate_conv(body.mean((2, 3), keepdim=True)))
        pre = self.pre_bn(self.pre_conv(body * gate))
        mixed = torch.cat([F.relu6(pre), pre], dim=1)
        return self.fc(self.drop(torch.flatten(F.max_pool2d(mixed, 2), 1)))


def _paired(source: str) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    ours = load_source(source, "<small_net>")["build_model"]()
    ref = HandWritten()
    ours_state = ours.state_dict()
    ref_state = list(ref.state_dict().values())
    assert [t.shape for t in ours_state.values()] == [t.shape for t in ref_state]
    ours.load_state_dict(dict(zip(ours_state, ref_state)))
    return ours, ref


def _train_step(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Output, input gradient and parameter gradients of one train-mode step (same dropout mask for both)."""
    model.train()
    x = x.clone().requires_grad_(True)
    torch.manual_seed(1)
    out = model(x)
    (out * torch.arange(1.0, 11.0)).sum().backward()
    return out.detach(), x.grad, [p.grad for p in model.parameters()]


def test_built_module_matches_hand_written_reference(small_net: compiler.CompileResult) -> None:
    ours, ref = _paired(small_net.source)
    x = torch.randn(4, 3, 16, 16)
    out, x_grad, grads = _train_step(ours, x)
    ref_out, ref_x_grad, ref_grads = _train_step(ref, x)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(x_grad, ref_x_grad)
    assert len(grads) == len(ref_grads) == 17
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r)
    for a, b in zip(ours.buffers(), ref.buffers()):  # batch-norm statistics moved alike
        torch.testing.assert_close(a, b)
    ours.eval(), ref.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x))


# ---- in-place ops only where safe ------------------------------------------------------------------------------
def test_in_place_only_where_the_input_is_fresh_and_unshared(small_net: compiler.CompileResult) -> None:
    chosen = in_place_nodes(small_net.graph)
    # relu after bn (fresh, one reader) and the residual add into the bn output: in place.
    assert {"stem_relu1", "body_y_relu1", "body_add1", "body_relu1"} <= chosen
    # relu6's input (pre_bn1) is also read by concat; sigmoid has no in-place mode; mul/concat have no in-place form.
    assert chosen.isdisjoint({"act", "gate_sigmoid1", "se", "mixed"})
    assert "self.act = nn.ReLU6()  #" in small_net.source
    assert "x1 += x  # body_add1" in small_net.source


def test_forcing_in_place_on_a_shared_input_would_be_wrong(small_net: compiler.CompileResult) -> None:
    """Shows the reference comparison above can fail: relu6 in place would clobber what concat reads."""
    unsafe = small_net.source.replace("nn.ReLU6()", "nn.ReLU6(inplace=True)")
    assert unsafe != small_net.source
    ours, ref = _paired(unsafe)
    ours.eval(), ref.eval()
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(ours(x), ref(x))


@pytest.mark.parametrize("producer, in_place", [
    ("conv(4, 1)", True), ("bn", True), ("(a, b) -> add", True), ("maxpool(1)", True),
    ("relu", False),        # an activation's output is saved for its backward
    ("sigmoid", False),
    ("identity", True),     # forwarded by the simplify pass: the relu then reads the conv, which nothing else reads
    ("dropout(0.1)", False),  # returns its input unchanged in eval mode
])
def test_activation_in_place_depends_on_its_producer(producer: str, in_place: bool) -> None:
    flow = producer if producer.startswith("(") else f"a -> {producer}"
    result = compiler.compile_source(f"""
        model m() {{
            input x: [4, 4, 4]
            a = x -> conv(4, 1)
            b = x -> conv(4, 1)
            p = {flow}
            q = p -> relu
            output (q, b) -> add
        }}""")
    assert ("q" in in_place_nodes(result.graph)) is in_place
    model = result.build().train()
    x = torch.randn(2, 4, 4, 4, requires_grad=True)
    model(x).sum().backward()  # autograd raises if an in-place op overwrote a tensor saved for backward
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_no_in_place_on_graph_input_or_output() -> None:
    result = compiler.compile_source("""
        model m() {
            input x: [4, 4, 4]
            y = x -> relu
            output y -> relu
        }""")
    assert in_place_nodes(result.graph) == set()  # x is the caller's tensor; y's producer is an activation
    x = torch.randn(2, 4, 4, 4)
    before = x.clone()
    result.build()(x)
    assert torch.equal(x, before)


def test_add_in_place_only_into_an_unshared_first_input() -> None:
    result = compiler.compile_source("""
        model m() {
            input x: [4, 4, 4]
            a = x -> conv(4, 1)
            b = x -> conv(4, 1)
            s = (a, b) -> add
            t = (s, a) -> add
            output (t, s) -> add
        }""")
    # s must not write into a (read again by t), nor t into s (read again at the end); the last add may write
    # into t, which nothing else reads.
    assert in_place_nodes(result.graph) == {"add1"}
    assert result.source.count("+=") == 1
    torch.manual_seed(0)
    model = result.build()
    x = torch.randn(2, 4, 4, 4)
    a, b = model.a(x), model.b(x)
    torch.testing.assert_close(model(x), (a + b + a) + (a + b))


# ---- determinism, imports, readable constructor calls ----------------------------------------------------------
def test_compile_twice_gives_identical_text(small_net: compiler.CompileResult) -> None:
    again = compiler.compile_file(SMALL_NET)
    assert again.source == small_net.source
    assert again.arch == small_net.arch


def test_source_does_not_depend_on_the_hash_seed(small_net: compiler.CompileResult) -> None:
    """Sets and dicts of strings iterate in an order that changes with PYTHONHASHSEED; the output must not."""
    code = "import sys, compiler; sys.stdout.write(compiler.compile_file(sys.argv[1]).source)"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(SMALL_NET)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)})
             for seed in ("1", "2")]  # started together: each spends seconds importing torch
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        assert out == small_net.source


def _imported_modules(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import in generated code"
            names.add(node.module or "")
    return names


@pytest.mark.parametrize("arch", sorted(p.name for p in (ROOT / "examples").glob("*.arch")) + ["golden"])
def test_generated_file_imports_only_torch(arch: str) -> None:
    path = SMALL_NET if arch == "golden" else ROOT / "examples" / arch
    modules = _imported_modules(compiler.compile_file(path).source)
    assert modules and all(m == "torch" or m.startswith("torch.") for m in modules), modules


def _constructor_calls(source: str) -> dict[str, ast.Call]:
    """self.NAME = nn.X(...) assignments in __init__, by attribute name."""
    calls = {}
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Attribute)
                and isinstance(node.value, ast.Call)):
            calls[node.targets[0].attr] = node.value
    return calls


def test_constructor_calls_leave_out_pytorch_defaults(small_net: compiler.CompileResult) -> None:
    calls = _constructor_calls(small_net.source)
    for default in ("dilation=1", "groups=1", "affine=True", "eps=1e-05", "momentum=0.1", "ceil_mode=False",
                    "bias=True", "stride=1", "padding=0"):
        assert default not in small_net.source
    stem_bn = {k.arg: ast.literal_eval(k.value) for k in calls["stem_bn1"].keywords}
    assert stem_bn == {"eps": 0.001, "momentum": 0.01}  # non-defaults kept, exactly
    assert ast.unparse(calls["body_y_bn1"]) == "nn.BatchNorm2d(8)"
    assert ast.unparse(calls["stem_conv1"]) == "nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1, bias=False)"
    model = small_net.build()
    assert (model.stem_bn1.eps, model.stem_bn1.momentum) == (0.001, 0.01)
    assert (model.body_y_bn1.eps, model.body_y_bn1.momentum, model.body_y_bn1.affine) == (1e-5, 0.1, True)
    assert model.stem_conv1.dilation == (1, 1) and model.stem_conv1.groups == 1


def test_nn_call_keeps_values_that_differ_in_type_or_value() -> None:
    assert nn_call(nn.Conv2d, 3, 8, kernel_size=3, stride=1, dilation=1, groups=1, bias=True) == \
        "nn.Conv2d(3, 8, kernel_size=3)"
    assert nn_call(nn.Conv2d, 3, 8, kernel_size=3, dilation=2, groups=1) == "nn.Conv2d(3, 8, kernel_size=3, dilation=2)"
    assert nn_call(nn.BatchNorm2d, 8, eps=1e-5, momentum=0.1, affine=False) == "nn.BatchNorm2d(8, affine=False)"
    assert nn_call(nn.BatchNorm2d, 8, eps=1.0000001e-5) == "nn.BatchNorm2d(8, eps=1.0000001e-05)"
    assert nn_call(nn.Dropout, p=0.5) == "nn.Dropout()"
    assert nn_call(nn.Dropout, p=1) == "nn.Dropout(p=1)"  # an int 1 is not the float default: written as given


def test_inputs_named_like_registers_keep_their_values() -> None:
    """forward() reuses variables x, x1, ...; graph inputs with those names must not be clobbered early."""
    result = compiler.compile_source("""
        model m() {
            input x1, x, x2: [4, 4, 4]
            a = x1 -> conv(4, 1)
            b = (a, x) -> add -> relu
            c = (b, x2, x) -> concat
            output c -> conv(4, 1)
        }""")
    torch.manual_seed(0)
    model = result.build()
    x1, x, x2 = (torch.randn(2, 4, 4, 4) for _ in range(3))
    expected = model.conv1(torch.cat([F.relu(model.a(x1) + x), x2, x], dim=1))
    torch.testing.assert_close(model(x1, x, x2), expected)
