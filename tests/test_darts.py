"""DARTS: bilevel search, derivation, collapse warning, cost penalty, checkpoints, memory check, and the CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.func import functional_call
from torch.nn import functional as F

from compiler.api import CompileOptions
from compiler.supernet import RelaxedDecision, build_supernet
from compiler.errors import Span
from compiler.space import Decision, load_space, load_space_file
from conftest import ROOT, run_cli
from search.darts.bilevel import BilevelSearch, ResumeMismatch
from search.darts.config import DartsConfigError, darts_config
from search.darts.cost import ExpectedCost, build_penalty
from search.darts.derive import collapse, collapse_warning, derive, edge_strengths, keep_strongest
from search.darts.memory import check_memory, estimate
from search.darts.report import report_notes
from search.data.digits import load_digits_splits


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def digits():
    return load_digits_splits()


def tiny_space(options: str):
    return load_space(f"""
model tiny(num_classes = 10) {{
    input x: [1, 8, 8]
    x = x -> conv(8, 3) -> bn -> relu -> maxpool(2)
    x = x -> [{options}] as op
    output x -> flatten -> linear(num_classes)
}}
""", "tiny.arch")


def settings(**changes):
    base = {"epochs": 2, "batch_size": 32, "progress": False, "memory_limit_mb": None}
    for key, value in changes.items():
        node = base
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return darts_config(base)


def search(space_options: str, data, checkpoint=None, **changes) -> tuple[BilevelSearch, list[dict]]:
    supernet = build_supernet(tiny_space(space_options))
    cfg = settings(**changes)
    run = BilevelSearch(supernet, data, cfg, seed=0, penalty=build_penalty(supernet, cfg.cost),
                        checkpoint=checkpoint, identity={"test": 1})
    return run, run.run()


def test_alphas_move_toward_the_clearly_better_option(digits) -> None:
    # `zero` makes the output constant, so only `identity` can lower the held-out loss
    _, history = search("identity | zero", digits, **{"arch.lr": 0.03})
    p_identity = [h["softmax"][0][0] for h in history]
    assert 0.6 < p_identity[0] < p_identity[1] and p_identity[1] > 0.8
    assert history[-1]["train_acc"] > 0.8 and history[-1]["arch_acc"] > 0.8 and history[-1]["val_acc"] > 0.8
    # the paper's learning rate moves them the same way, only slower
    _, paper = search("identity | zero", digits)
    assert 0.5 < paper[0]["softmax"][0][0] < paper[1]["softmax"][0][0] < 0.6


def test_the_cost_penalty_shifts_the_derived_option_to_the_cheaper_one(digits) -> None:
    options = "conv(8, 3) | maxpool(3, stride=1, padding=1)"
    _, plain = search(options, digits, **{"arch.lr": 0.03})
    run, priced = search(options, digits, **{"arch.lr": 0.03, "cost.weight": 3.0, "cost.metric": "macs"})
    cheap = 1  # max pooling: no MACs
    assert derive(run.supernet.relaxed, plain[-1]["softmax"]) == (0,)     # accuracy alone prefers the conv
    assert derive(run.supernet.relaxed, priced[-1]["softmax"]) == (cheap,)
    assert priced[-1]["softmax"][0][cheap] > plain[-1]["softmax"][0][cheap] + 0.3
    assert priced[-1]["expected_cost"] < priced[0]["expected_cost"] < plain[0]["expected_cost"]


def test_expected_cost_is_the_expectation_over_architectures() -> None:
    # a nested choice: the inner decision only exists under option 1 of the outer one
    space = load_space("""
block inner() { input x  output x -> [conv(4, 3) | conv(4, 1) | identity] as inner }
model m() {
    input x: [2, 6, 6]
    x = x -> conv(4, 1)
    x = x -> [conv(4, 5) | inner | maxpool(3, stride=1, padding=1)] as outer
    output x -> flatten -> linear(3)
}
""", "m.arch")
    supernet = build_supernet(space)
    from compiler.backends.supernet import NODE_COSTS
    table = supernet.cost_table(NODE_COSTS["macs"])
    probs = [torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64), torch.tensor([0.1, 0.6, 0.3], dtype=torch.float64)]
    expected = ExpectedCost(table, [3, 3], normalize=False).expected(probs)
    brute = 0.0
    for g in space.genotypes():
        chosen = dict(zip([d.name for d in space.decisions], g))
        p = float(probs[0][chosen["outer"]] * probs[1][chosen["inner"]])
        brute += p * space.compile(g).summary["macs"]
    assert abs(float(expected) - brute) < 1e-6 * brute
    normalized = ExpectedCost(table, [3, 3], normalize=True)
    uniform = [torch.full((3,), 1 / 3, dtype=torch.float64)] * 2
    assert abs(float(normalized(uniform)) - 1.0) < 1e-12


def test_a_per_op_latency_table_plugs_in_as_the_cost(tmp_path: Path) -> None:
    from search.profiling.optable import OVERHEAD, LatencyTable, op_key
    supernet = build_supernet(tiny_space("identity | conv(8, 3) | zero"))
    table = LatencyTable("test-device", {})
    table.put(OVERHEAD, 1, 0.5)
    ops = [n for n in supernet.graph.nodes if n.op not in ("input", "mixed", "zero")]
    for node in ops:
        table.put(op_key(node), 1, 1.5)            # every op: 1 ms more than an empty call
    table.save(tmp_path / "table.json")
    cfg = settings(**{"cost.metric": "latency", "cost.table": str(tmp_path / "table.json"), "cost.normalize": False})
    penalty = build_penalty(supernet, cfg.cost)
    per_option = {tuple(g): c for g, c in penalty.terms}
    assert per_option == {((0, 1),): 1.0}           # the conv; identity and zero cost nothing
    assert penalty.constant == len(ops) - 1
    del table.entries[op_key(ops[0])]
    table.save(tmp_path / "table.json")
    with pytest.raises(DartsConfigError, match=r"^search.cost.table: error: the latency table has no batch-1 entry "
                                               r"for 1 op\(s\) of the supernet"):
        build_penalty(supernet, cfg.cost)


def test_derivation_takes_the_argmax_and_never_zero() -> None:
    decision = Decision("op", ("zero", "skip", "conv"), "layer", Span("s.arch", 3, 5))
    relaxed = [RelaxedDecision(0, decision, 2, (True, False, False), (True, True, False)),
               RelaxedDecision(1, Decision("pick", ("a", "b"), "input"), 1, (False, False), (True, True))]
    probabilities = [[0.5, 0.2, 0.3], [0.5, 0.5]]
    assert derive(relaxed, probabilities) == (2, 0)        # zero excluded; ties take the first option
    assert derive(relaxed, probabilities, exclude_zero=False) == (0, 0)


def _cell(kinds: list[bool]) -> list[RelaxedDecision]:
    """Decisions offering skip (parameter-free), conv and zero."""
    return [RelaxedDecision(i, Decision(f"normal.e{i}.op", ("zero", "skip", "conv"), "layer",
                                        Span("darts.arch", 40 + i, 17)), 1, (True, False, False), (True, True, False))
            for i in range(len(kinds))]


def test_collapse_warning_fires_when_parameter_free_ops_dominate() -> None:
    relaxed = _cell([True] * 4)
    probabilities = [[0.1, 0.6, 0.3], [0.1, 0.5, 0.4], [0.1, 0.7, 0.2], [0.1, 0.2, 0.7]]
    choices = derive(relaxed, probabilities)
    assert choices == (1, 1, 1, 2)
    result = collapse(relaxed, probabilities, choices, threshold=0.5)
    assert result.collapsed and result.share == 0.75 and result.parameter_free == (0, 1, 2)
    assert abs(result.mass - (0.7 + 0.6 + 0.8 + 0.3) / 4) < 1e-12 and abs(result.uniform_mass - 2 / 3) < 1e-12
    text = collapse_warning(relaxed, choices, result)
    assert text.startswith("darts.arch:40:17: warning: possible DARTS collapse: 3 of 4 decisions (75%")
    assert "normal.e0.op=skip" in text and "normal.e3.op" not in text and "search.warmup_epochs" in text
    assert not collapse(relaxed, probabilities, choices, threshold=0.8).collapsed
    healthy = [[0.1, 0.2, 0.7]] * 4
    assert not collapse(relaxed, healthy, derive(relaxed, healthy)).collapsed
    # decisions where every option is parameter-free (or none is) cannot collapse and are not counted
    only_free = [RelaxedDecision(0, Decision("p", ("skip", "pool"), "layer"), 1, (False, False), (True, True))]
    assert collapse(only_free, [[0.5, 0.5]], (0,)).considered == ()


def test_the_collapse_warning_is_recorded_in_the_report_section(digits) -> None:
    run, history = search("identity | zero | conv(8, 3)", digits, epochs=1)
    warning = "tiny.arch:5:10: warning: possible DARTS collapse: ..."
    notes = "\n".join(report_notes(run.supernet, history, (0,), "supernet: ...", [warning], 1.0, "macs"))
    assert "## DARTS" in notes and warning in notes and "| op | `identity` |" in notes


def test_checkpoint_resumes_to_the_uninterrupted_result(digits, tmp_path: Path) -> None:
    reference, full = search("identity | conv(8, 3) | zero", digits, checkpoint=tmp_path / "a.pt", epochs=3)

    class Killed(Exception):
        pass

    supernet = build_supernet(tiny_space("identity | conv(8, 3) | zero"))
    cfg = settings(epochs=3)
    first = BilevelSearch(supernet, digits, cfg, 0, build_penalty(supernet, cfg.cost), tmp_path / "b.pt", {"test": 1})

    def kill(record: dict) -> None:
        if record["epoch"] == 1:
            raise Killed
    with pytest.raises(Killed):
        first.run(on_epoch=kill)
    assert torch.load(tmp_path / "b.pt", weights_only=True)["epochs_done"] == 1  # plain data: nothing in it runs
    resumed = BilevelSearch(supernet, digits, cfg, 0, build_penalty(supernet, cfg.cost), tmp_path / "b.pt",
                            {"test": 1})
    history = resumed.run()
    assert [h["softmax"] for h in history] == [h["softmax"] for h in full]
    for (name, a), b in zip(reference.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    other = BilevelSearch(supernet, digits, cfg, 0, None, tmp_path / "b.pt", {"test": 2})
    with pytest.raises(ResumeMismatch, match="test: 1 -> 2"):
        other.run()


def test_a_checkpoint_is_read_to_the_host_whatever_the_runs_device(digits, tmp_path: Path) -> None:
    # On a GPU, reading the checkpoint straight to the device put the RNG states there, which set_state refuses
    # (every DARTS resume on CUDA failed). The meta device stands in for the GPU here: restore must not use it.
    run, _ = search("identity | conv(8, 3) | zero", digits, checkpoint=tmp_path / "a.pt", epochs=1)
    supernet = build_supernet(tiny_space("identity | conv(8, 3) | zero"))
    cfg = settings(epochs=2)
    resumed = BilevelSearch(supernet, digits, cfg, 0, None, tmp_path / "a.pt", {"test": 1})
    resumed.device = torch.device("meta")
    torch.manual_seed(123)
    assert resumed.restore() == 1
    saved = torch.load(tmp_path / "a.pt", weights_only=True)
    assert torch.equal(torch.get_rng_state(), saved["rng"]) and saved["rng"].device.type == "cpu"
    assert torch.equal(resumed.weight_loader.generator.get_state(), saved["loaders"][0][0])
    assert saved["cuda_rng"].numel() == 0   # a CPU run has no GPU generator to save


def test_max_seconds_stops_at_an_epoch_end_and_a_resume_stops_there_too(digits, tmp_path: Path,
                                                                     monkeypatch) -> None:
    def timed(self, index):   # every epoch "takes" 10 s: the limit, not the machine, decides
        return {**real_epoch(self, index), "seconds": 10.0}
    real_epoch = BilevelSearch.epoch
    monkeypatch.setattr(BilevelSearch, "epoch", timed)
    # 25 s: after 2 epochs (20 s) a third would end at 30 s, so training stops there; schedules still span 5 epochs
    run, history = search("identity | conv(8, 3) | zero", digits, checkpoint=tmp_path / "a.pt", epochs=5,
                          max_seconds=25)
    assert [h["epoch"] for h in history] == [1, 2] and history[1]["lr"] > run.cfg.weights.lr_min * 2
    assert search("identity | conv(8, 3) | zero", digits, epochs=5, max_seconds=30)[1][-1]["epoch"] == 3
    resumed = BilevelSearch(run.supernet, digits, run.cfg, 0, None, tmp_path / "a.pt", {"test": 1})
    assert [h["epoch"] for h in resumed.run()] == [1, 2]   # nothing more: the recorded seconds decide
    for bad in (0, -1.0):
        with pytest.raises(DartsConfigError, match="max_seconds must be > 0"):
            settings(max_seconds=bad)


def test_max_seconds_expects_epochs_with_architecture_steps_to_be_slower_than_warm_up(digits, monkeypatch) -> None:
    def timed(self, index):   # warm-up (weight steps only) 10 s an epoch, then 20 s with the architecture steps
        return {**real_epoch(self, index), "seconds": 10.0 if index < self.cfg.warmup_epochs else 20.0}
    real_epoch = BilevelSearch.epoch
    monkeypatch.setattr(BilevelSearch, "epoch", timed)
    epochs = lambda limit: len(search("identity | conv(8, 3) | zero", digits, epochs=5, warmup_epochs=2,  # noqa: E731
                                      max_seconds=limit)[1])
    # after 2 warm-up epochs (20 s) the next is estimated at 2 x 10 s: 40 s passes 35 but not 45
    assert epochs(35) == 2 and epochs(45) == 3
    # then the search epochs themselves are the measure: 40 s + 20 s passes 55; 60 s + 20 s passes 75, not 80
    assert epochs(55) == 3 and epochs(75) == 4 and epochs(80) == 5


def test_second_order_gradient_matches_the_exact_hypergradient(digits) -> None:
    supernet = build_supernet(tiny_space("identity | conv(8, 3) | avgpool(3, stride=1, padding=1)"))
    cfg = settings(order=2, **{"weights.weight_decay": 0.0, "weights.lr": 0.05})
    run = BilevelSearch(supernet, digits, cfg, 0)
    run.model.eval()  # batch-norm from running statistics: the same function in every pass
    (xw, yw), (xa, ya) = next(iter(run.weight_loader)), next(iter(run.arch_loader))
    approx, _, _ = run._unrolled_grads(xw, yw, xa, ya)
    names = [n for n, p in run.model.named_parameters() if not n.startswith("alphas")]
    weights = [dict(run.model.named_parameters())[n] for n in names]
    train_grads = torch.autograd.grad(F.cross_entropy(run.model(xw), yw), weights, create_graph=True)
    virtual = {n: w - 0.05 * g for n, w, g in zip(names, weights, train_grads)}
    out = functional_call(run.model, virtual, (xa,), {"weights": run.model.arch_weights()})
    (exact,) = torch.autograd.grad(F.cross_entropy(out, ya), run.alphas)
    assert torch.allclose(approx[0], exact, rtol=2e-2, atol=1e-6), (approx[0], exact)
    first_order = torch.autograd.grad(F.cross_entropy(run.model(xa), ya), run.alphas)[0]
    assert not torch.allclose(first_order, exact, rtol=1e-3, atol=1e-7)  # the unrolled term matters here
    _, history = search("identity | conv(8, 3)", digits, epochs=1, order=2)
    assert all(0 < p < 1 for p in history[0]["softmax"][0])


def test_memory_estimate_and_limit() -> None:
    supernet = build_supernet(tiny_space("identity | conv(8, 3) | zero"))
    small, large = estimate(supernet, 8), estimate(supernet, 64)
    assert small.params == supernet.params and small.arch_params == 3
    assert abs(large.activations_mb - 8 * small.activations_mb) < 1e-9 and large.weights_mb == small.weights_mb
    assert estimate(supernet, 8, order=2).weights_mb == 2 * small.weights_mb
    assert check_memory(large, None, torch.device("cpu")) is None
    assert check_memory(large, 1e6, torch.device("cpu")) == 1e6
    with pytest.raises(DartsConfigError) as info:
        check_memory(large, 0.01, torch.device("cpu"))
    text = str(info.value)
    assert text.startswith("search.memory_limit_mb: error: the supernet would need about")
    assert "more than the configured limit (0 MiB)" in text and "search.batch_size" in text


def test_bad_options_are_named() -> None:
    with pytest.raises(DartsConfigError, match=r"^search.order: error: order must be 1"):
        darts_config({"order": 3})
    with pytest.raises(DartsConfigError, match=r"search.epochs"):
        darts_config({"epochs": "many"})
    with pytest.raises(DartsConfigError, match=r"cost.metric=latency needs cost.table"):
        darts_config({"cost": {"metric": "latency"}})


# ---- the command line --------------------------------------------------------------------------------------
CHECK_EXPORT = """
import importlib.util, json, sys, torch
out = sys.argv[1]
spec = importlib.util.spec_from_file_location("m", out + "/best/model.py")
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
model = m.build_model(); model.load_state_dict(torch.load(out + "/best/weights.pt")); model.eval()
spec = importlib.util.spec_from_file_location("s", out + "/supernet.py")
s = importlib.util.module_from_spec(spec); spec.loader.exec_module(s)
supernet = s.build_model()
assert 'compiler' not in sys.modules and 'search' not in sys.modules
x = torch.randn(2, 1, 8, 8)
print(json.dumps([list(model(x).shape), list(supernet(x).shape), len(supernet.arch_parameters())]))
"""


@pytest.mark.slow
def test_cli_darts_search_writes_the_outputs_of_every_search(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_cli("+search=darts", "search.epochs=3", "evaluator.final_overrides.budget.epochs=10",
                   f"out_dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "estimated training memory at batch 64" in proc.stdout and "epoch 3/3" in proc.stdout
    for name in ["history.jsonl", "checkpoint.json", "pareto.json", "report.md", "config.yaml", "supernet.py",
                 "alphas.json", "alphas.png", "darts_state.pt", "best/arch.arch", "best/model.py", "best/summary.json",
                 "best/weights.pt", "best/metrics.json"]:
        assert (out / name).is_file(), name
    metrics = json.loads((out / "best" / "metrics.json").read_text())
    assert metrics["status"] == "ok" and 0.5 < metrics["test_acc"] <= 1.0  # chance is 0.1
    alphas = json.loads((out / "alphas.json").read_text())
    assert [e["epoch"] for e in alphas["epochs"]] == [1, 2, 3] and len(alphas["decisions"]) == 6
    for epoch in alphas["epochs"]:
        assert all(abs(sum(p) - 1) < 1e-6 for p in epoch["softmax"].values())  # float32 softmax
    # the derived architecture: the loop's one record (evaluated by the evaluator, with the supernet's figures), and
    # the final training of best/ (the search's part of summary.json holds both)
    record = json.loads((out / "history.jsonl").read_text())
    assert record["status"] == "ok" and 0.1 < record["metrics"]["accuracy"] <= 1.0
    assert "test_acc" not in record["metrics"]  # the search never looks at the test split; the final training does
    assert record["metrics"]["supernet_val_acc"] == alphas["epochs"][-1]["val_acc"]
    assert "none" not in record["decisions"].values()  # `zero` is never derived
    summary = json.loads((out / "best" / "summary.json").read_text())
    assert summary["search"]["genotype"] == record["genotype"] and summary["params"] == record["metrics"]["params"]
    assert summary["search"]["final"]["test_acc"] == metrics["test_acc"]
    report = (out / "report.md").read_text()
    assert "## DARTS" in report and "![alphas.png](alphas.png)" in report and "## Best architecture" in report
    check = subprocess.run([sys.executable, "-c", CHECK_EXPORT, str(out)], capture_output=True, text=True,
                           timeout=120, cwd=tmp_path)
    assert check.returncode == 0, check.stderr[-3000:]
    assert json.loads(check.stdout) == [[2, 10], [2, 10], 6]


def test_cli_a_time_limit_derives_from_the_epochs_done_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_cli("+search=darts", "search.epochs=3", "search.max_seconds=0.001", "search.train_derived=false",
                   f"out_dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "epoch 1/3" in proc.stdout and "epoch 2/3" not in proc.stdout   # the first epoch always runs
    assert "the supernet trained 1 of 3 epochs: search.max_seconds=0.001 stopped it" in proc.stdout
    alphas = json.loads((out / "alphas.json").read_text())
    assert [e["epoch"] for e in alphas["epochs"]] == [1]
    assert "the supernet trained 1 of 3 epochs" in (out / "report.md").read_text()
    record = json.loads((out / "history.jsonl").read_text())
    assert record["status"] == "derived" and len(record["decisions"]) == 6


def test_cli_value_decisions_and_memory_limit_are_clear_errors(tmp_path: Path) -> None:
    proc = run_cli("+search=darts", "space=digits", f"out_dir={tmp_path / 'a'}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "digits.arch:23:13: error: a supernet mixes layer and input choices only" in proc.stderr
    assert "'+search.fixed={width: 8" in proc.stderr
    proc = run_cli("+search=darts", "space=digits", "+search.fixed={widht: 8}", f"out_dir={tmp_path / 'c'}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "search.fixed: error: the space 'digits' has no decision 'widht' to fix" in proc.stderr
    assert "did you mean 'width'?" in proc.stderr
    proc = run_cli("+search=darts", "search.memory_limit_mb=0.5", f"out_dir={tmp_path / 'b'}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "search.memory_limit_mb: error: the supernet would need about" in proc.stderr
    assert not (tmp_path / "b" / "darts_state.pt").exists()   # stopped before any training


def test_top_inputs_keeps_each_nodes_strongest_edges_as_darts_does() -> None:
    space = load_space_file(str(ROOT / "examples" / "spaces" / "darts.arch"),
                            options=CompileOptions(input_shape=(1, 8, 8)), channels=4, layers=3, in_channels=1, size=8)
    supernet = build_supernet(space, unrelaxed="first")
    groups = supernet.edge_groups
    names = [[supernet.relaxed[d].name for d in g] for g in groups]
    # one group per intermediate node of the normal and the reduction cell (cells sharing decisions: once)
    assert sorted(len(g) for g in groups) == [2, 2, 3, 3, 4, 4, 5, 5]
    assert ["normal.e5_0.op", "normal.e5_1.op", "normal.e5_2.op", "normal.e5_3.op", "normal.e5_4.op"] in names
    generator = torch.Generator().manual_seed(0)
    probabilities = [torch.rand(len(r.options), generator=generator).softmax(0).tolist() for r in supernet.relaxed]
    op_choices = derive(supernet.relaxed, probabilities)
    choices = keep_strongest(supernet.relaxed, edge_strengths(supernet.relaxed, probabilities, groups), op_choices,
                             groups, 2)
    for group in groups:
        kept = [d for d in group if not supernet.relaxed[d].zero[choices[d]]]
        strength = {d: max(p for p, z in zip(probabilities[d], supernet.relaxed[d].zero) if not z) for d in group}
        assert sorted(kept) == sorted(sorted(group, key=lambda d: -strength[d])[:2])  # the two strongest
        assert all(choices[d] == op_choices[d] for d in kept)  # with the op each chose
    assert sum(not supernet.relaxed[d].zero[c] for d, c in enumerate(choices)) == 16  # 8 edges per cell type
    with pytest.raises(DartsConfigError, match=r"search.derive.top_inputs: error: top_inputs must be >= 1"):
        darts_config({"derive": {"top_inputs": 0}})
