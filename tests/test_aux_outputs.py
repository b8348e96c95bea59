"""Auxiliary outputs (`output NAME = flow`): carried from the grammar through the IR, passes, printer, PyTorch
source, summary, supernet and trainer; DARTS' auxiliary head counted against the reference (quark0/darts)."""
from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from compiler import ArchError, compile_source, parse_graph
from compiler.api import CompileOptions, load_source
from compiler.supernet import build_supernet
from compiler.space import load_space, load_space_file
from search.data.digits import load_digits_splits
from search.data.loader import DeviceLoader
from search.training import seed_everything, train
from search.training.trainer import training_loss

ROOT = Path(__file__).resolve().parents[1]
DARTS = ROOT / "examples" / "spaces" / "darts.arch"

TWO_OUTPUTS = """
model two(num_classes = 10, in_channels = 1, size = 8) {
    input x: [in_channels, size, size]
    y = x -> conv(8, 3) -> bn -> relu
    output aux = y -> global_avgpool -> flatten -> linear(num_classes)
    output y -> conv(16, 3, stride=2) -> bn -> relu -> global_avgpool -> flatten -> linear(num_classes)
}
"""


def test_parse_print_round_trip_of_a_two_output_model() -> None:
    result = compile_source(TWO_OUTPUTS, "two.arch")
    graph = result.graph
    assert graph.aux_outputs == (("aux", "aux_linear1"),) and graph.output == "linear1"
    assert "    output aux = aux_linear1\n    output linear1\n}" in result.arch
    again = parse_graph(result.arch, "printed.arch")
    assert again == graph and again.aux_outputs == graph.aux_outputs
    assert compile_source(result.arch).arch == result.arch
    # the auxiliary output is part of the IR's identity
    assert parse_graph(result.arch.replace("    output aux = aux_linear1\n", "")) != graph


def test_dead_code_elimination_keeps_the_head_and_costs_count_it_separately() -> None:
    result = compile_source(TWO_OUTPUTS, "two.arch")
    assert result.warnings == ()  # the head is used: by its output
    head = 8 * 10 + 10
    main = 8 * 1 * 9 + 8 + 16 + 16 * 8 * 9 + 16 + 32 + 16 * 10 + 10
    assert result.summary["params"] == main + head and result.summary["inference_params"] == main
    assert result.summary["macs"] - result.summary["inference_macs"] == 8 * 10
    assert result.summary["outputs"] == [
        {"name": "main", "node": "linear1", "shape": [10], "training_only": False},
        {"name": "aux", "node": "aux_linear1", "shape": [10], "training_only": True}]
    assert f"{main + head:,} parameters ({main:,} without the auxiliary outputs)" in result.layer_table()
    # a model without one says nothing new
    aux_line = "    output aux = y -> global_avgpool -> flatten -> linear(num_classes)\n"
    plain = compile_source(TWO_OUTPUTS.replace(aux_line, ""))
    assert plain.summary["inference_params"] == plain.summary["params"] == main
    assert "auxiliary" not in plain.source and "self.training" not in plain.source


def test_generated_model_returns_the_main_output_in_eval_and_both_in_training() -> None:
    result = compile_source(TWO_OUTPUTS, "two.arch")
    tree = ast.parse(result.source)
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {"torch"}
    torch.manual_seed(0)
    model = load_source(result.source, "<two>")["build_model"]()
    x = torch.randn(4, 1, 8, 8)
    model.eval()
    with torch.no_grad():
        main = model(x)
    assert isinstance(main, torch.Tensor) and main.shape == (4, 10)
    model.train()
    out, aux = model(x)
    assert out.shape == aux.shape == (4, 10)
    # the head is the layers it names, fed by the shared value; evaluation does not run them
    features = torch.relu(model.y_bn1(model.y_conv1(x)))
    assert torch.allclose(aux, model.aux_linear1(features.mean((2, 3))), atol=1e-6)
    calls = []
    model.aux_linear1.register_forward_hook(lambda *args: calls.append(1))
    model.eval()
    model(x)
    assert calls == []


def test_model_file_with_two_outputs_runs_as_a_script(tmp_path: Path) -> None:
    import subprocess
    import sys
    compile_source(TWO_OUTPUTS, "two.arch").write(tmp_path)
    run = subprocess.run([sys.executable, str(tmp_path / "model.py")], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "torch.Size([2, 10])"


@pytest.mark.parametrize("text, message", [
    ("block b() { input x\n output aux = x -> relu\n output x }\n"
     "model m() { input x: [2]\n output x -> b }", "belongs to the model, not to a block"),
    ("model m() { input x: [2]\n for i in range(2) { output aux = x -> relu }\n output x }",
     "auxiliary output 'aux' is declared twice"),
    ("model m() { input x: [2]\n output main = x -> relu\n output x }", "'main' names the model's main output"),
    ("model m() { input x: [2]\n output aux = x -> relu }", "has no 'output' statement"),
    ("model m() { input x: [2]\n output x\n output aux = x -> relu }", "statement after 'output'"),
])
def test_mistakes_are_located_errors(text: str, message: str) -> None:
    with pytest.raises(ArchError, match=message) as err:
        compile_source(text, "m.arch")
    assert err.value.span.file == "m.arch" and err.value.span.line >= 1


def test_choices_in_an_auxiliary_flow_are_decisions() -> None:
    space = load_space("model m() { input x: [2]\n output head = x -> [relu | tanh]\n output x -> linear(3) }")
    assert [d.name for d in space.decisions] == ["m.head"]
    assert [n.op for n in space.concretize((1,)).nodes] == ["input", "tanh", "linear"]


# ---- the trainer ---------------------------------------------------------------------------------------------
def test_training_loss_adds_the_weighted_auxiliary_losses() -> None:
    ce = nn.CrossEntropyLoss()
    y = torch.tensor([0, 2])
    main, aux = torch.randn(2, 3), torch.randn(2, 3)
    logits, loss = training_loss((main, aux), y, ce, 0.4)
    assert logits is main and torch.allclose(loss, ce(main, y) + 0.4 * ce(aux, y))
    assert torch.equal(training_loss((main, aux), y, ce, 0.0)[1], ce(main, y))
    assert torch.equal(training_loss(main, y, ce, 0.4)[1], ce(main, y))


@pytest.fixture(scope="module")
def digits():
    return load_digits_splits()


def _one_full_batch_step(data, aux_weight: float) -> tuple[dict, float, float, float]:
    """Train one step on the whole training split as one batch; return the epoch record and, computed here on
    the model as it was before the step, the main loss, the auxiliary loss and the main output's accuracy."""
    seed_everything(0)
    model = compile_source(TWO_OUTPUTS, options=CompileOptions(input_shape=data.input_shape),
                           num_classes=data.num_classes).build()
    before = copy.deepcopy(model).train()
    loader = DeviceLoader(data.train, len(data.train), "cpu", data.mean, data.std)
    (x, y), = list(loader)
    with torch.no_grad():
        main, aux = before(x)
    ce = nn.CrossEntropyLoss()
    result = train(model, data, budget={"steps": 1}, batch_size=len(data.train), aux_weight=aux_weight,
                   augment={"flip": "none", "translate": 0, "cutout": 0}, precision="fp32", device="cpu",
                   progress=False, cpu_threads=1, evaluate_test=False)
    assert result.ok, result.message
    accuracy = (main.argmax(1) == y).float().mean().item()
    return result.history[0], ce(main, y).item(), ce(aux, y).item(), accuracy


def test_trainer_loss_is_main_plus_weighted_aux_on_a_fixed_batch(digits) -> None:
    record, main, aux, accuracy = _one_full_batch_step(digits, 0.4)
    assert record["train_loss"] == pytest.approx(main + 0.4 * aux, rel=1e-5)
    assert record["train_acc"] == pytest.approx(accuracy)       # accuracy is the main output's
    record, main, aux, _ = _one_full_batch_step(digits, 0.0)
    assert record["train_loss"] == pytest.approx(main, rel=1e-5)
    assert aux > 0.1


def test_an_auxiliary_output_must_match_the_classes_of_the_data(digits, tmp_path: Path) -> None:
    from search.training.specialise import compile_for_data
    path = tmp_path / "wrong.arch"
    path.write_text(TWO_OUTPUTS.replace("output aux = y -> global_avgpool -> flatten -> linear(num_classes)",
                                        "output aux = y -> global_avgpool -> flatten -> linear(7)"))
    with pytest.raises(ArchError, match=r"auxiliary output 'aux' gives \[7\] per image but dataset 'digits'") as err:
        compile_for_data(path, digits)
    assert err.value.span.line == 5
    assert compile_for_data(ROOT / "examples" / "resnet20.arch", digits).graph.aux_outputs == ()


def test_a_model_with_an_auxiliary_output_trains_and_evaluates_its_main_output(digits) -> None:
    seed_everything(0)
    model = compile_source(TWO_OUTPUTS, options=CompileOptions(input_shape=digits.input_shape),
                           num_classes=digits.num_classes).build()
    result = train(model, digits, budget={"epochs": 3}, batch_size=64, progress=False, cpu_threads=1)
    assert result.ok and result.metrics["val_acc"] > 0.5 and result.metrics["test_acc"] > 0.5  # chance: 0.1


# ---- DARTS' auxiliary head against the reference (quark0/darts, cnn/model.py: NetworkCIFAR) --------------------
# The DARTS genotypes (cnn/genotypes.py): (op, input) pairs, two per intermediate node 2..5.
DARTS_V1 = {"normal": [("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
                       ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)],
            "reduce": [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
                       ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)]}
DARTS_V2 = {"normal": [("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
                       ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
            "reduce": [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
                       ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)]}
PRIMITIVES = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
              "dil_conv_3x3", "dil_conv_5x5")   # the options of darts.arch's edges, in this order


def darts_genotype(space, cells: dict) -> tuple[int, ...]:
    """Our genotype of a DARTS genotype: the named edges take their op, every other edge `zero` (option 0)."""
    chosen = {f"{kind}.e{k // 2 + 2}_{source}.op": PRIMITIVES.index(op)
              for kind, edges in cells.items() for k, (op, source) in enumerate(edges)}
    assert set(chosen) <= {d.name for d in space.decisions}
    return tuple(chosen.get(d.name, 0) for d in space.decisions)


@pytest.mark.parametrize("name, cells, total, without_head", [
    ("DARTS_V2", DARTS_V2, 3_825_768, 3_349_342),
    ("DARTS_V1", DARTS_V1, 3_645_840, 3_169_414),
])
def test_darts_evaluation_network_with_its_auxiliary_head_matches_the_reference(name, cells, total, without_head):
    """NetworkCIFAR(C=36, layers=20, auxiliary=True) counts these parameters; its AuxiliaryHeadCIFAR after the
    2/3-depth reduction cell holds 476,426 of them (576 -> 128 -> 768 -> 10)."""
    space = load_space_file(str(DARTS), channels=36, layers=20, auxiliary=True)
    result = space.compile(darts_genotype(space, cells))
    assert result.summary["params"] == total, name
    assert result.summary["inference_params"] == without_head
    assert total - without_head == 576 * 128 + 2 * 128 + 128 * 768 * 4 + 2 * 768 + 768 * 10 + 10
    assert result.graph.aux_outputs == (("aux", "aux_linear1"),)
    assert result.graph.node("aux_avgpool1").shape == (576, 2, 2)
    plain = load_space_file(str(DARTS), channels=36, layers=20).compile(darts_genotype(space, cells))
    assert plain.summary["params"] == without_head and plain.graph.aux_outputs == ()


def test_the_darts_supernet_leaves_the_auxiliary_head_out() -> None:
    small = dict(channels=4, layers=3, size=32)
    with_head = build_supernet(load_space_file(str(DARTS), auxiliary=True, **small))
    without = build_supernet(load_space_file(str(DARTS), **small))
    assert with_head.params == without.params and with_head.graph.aux_outputs == ()
    assert with_head.warnings == ()


def test_the_profiler_times_a_training_step_of_a_two_output_model() -> None:
    from compiler.backends.runtime import measure
    model = compile_source(TWO_OUTPUTS).build()
    before = [p.detach().clone() for p in model.parameters()]
    quick = dict(device="cpu", threads=1, warmup=1, warmup_s=0.0, min_time_s=0.0, min_iters=2, max_iters=2)
    report = measure.profile_module(model, [(1, 8, 8)], measure.Settings(train=True, batch_sizes=(2,), **quick))
    assert report["settings"]["train"] is True
    head = dict(model.named_parameters())["aux_linear1.weight"]
    assert not torch.equal(before[[n for n, _ in model.named_parameters()].index("aux_linear1.weight")], head)
