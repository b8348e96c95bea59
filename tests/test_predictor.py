"""The per-op latency table, the predictor built on it, the synthetic MobileNet-like networks and
`python -m compiler task=profile_ops`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from hydra import compose, initialize_config_module

from compiler.api import CompileOptions, compile_file, compile_graph, compile_source
from compiler.errors import ArchError
from compiler.resources import CONFIG_PACKAGE
from compiler.backends.runtime.measure import Settings
from search.profiling.optable import OVERHEAD, LatencyTable, distinct_ops, fill_table, op_key, single_op_graph
from search.profiling.predictor import (LatencyPredictor, MissingEntries, error_stats, fit_scale,
                                         held_out_calibration, kendall_tau, predict_ms)
from search.profiling.synthetic import mobilenet_like, sample_space
from search.tasks.profile_ops import profile_ops_task
from conftest import EXAMPLES, run_cli

NET = """
model net() {
    input x: [4, 8, 8]
    y = x -> conv(4, 3) -> relu
    output (x, y) -> add -> flatten -> linear(3)
}
"""
QUICK = Settings(threads=1, warmup=1, warmup_s=0.0, min_time_s=0.0, min_iters=3, max_iters=3)


def test_op_keys_tell_apart_what_changes_latency() -> None:
    graph = compile_source(NET).graph
    keys = {n.name: op_key(n) for n in graph.nodes if n.op != "input"}
    assert len(set(keys.values())) == len(keys)
    wider = compile_source(NET.replace("[4, 8, 8]", "[4, 16, 16]")).graph
    assert all(op_key(n) != keys[n.name] for n in wider.nodes if n.op in ("conv", "add"))
    assert len(distinct_ops([graph, compile_source(NET).graph])) == len(keys)


def test_single_op_graphs_compile_to_the_same_shapes() -> None:
    graph = compile_source(NET).graph
    for node in graph.nodes:
        if node.op == "input":
            continue
        alone = compile_graph(single_op_graph(node)).graph
        assert alone.output_node.shape == node.shape and alone.output_node.attrs == node.attrs
        assert [n.shape for n in alone.inputs] == list(node.meta["input_shapes"])  # add gets two inputs


def hand_table() -> tuple[LatencyTable, dict[str, float]]:
    graph = compile_source(NET).graph
    table = LatencyTable.for_settings(QUICK)
    values = {}
    for k, node in enumerate(n for n in graph.nodes if n.op != "input"):
        values[node.name] = 0.5 + k
        table.put(op_key(node), 1, 0.5 + k)
    table.put(OVERHEAD, 1, 0.25)
    return table, values


def test_prediction_counts_the_call_overhead_once() -> None:
    table, values = hand_table()
    graph = compile_source(NET).graph
    assert predict_ms(table, graph, 1) == pytest.approx(0.25 + sum(v - 0.25 for v in values.values()))
    with pytest.raises(MissingEntries, match=r"no batch-2 entry for 6 op\(s\) of 'net': the empty-model "
                                             r"overhead, .*task=profile_ops"):
        predict_ms(table, graph, 2)
    assert predict_ms(table, graph, 1, mode="sum") == predict_ms(table, graph, 1)  # CPU entries: auto is sum
    with pytest.raises(ValueError, match="needs host_ms and device_ms"):
        predict_ms(table, graph, 1, mode="overlap")
    with pytest.raises(ValueError, match="mode must be one of auto, sum, overlap"):
        predict_ms(table, graph, 1, mode="max")


def test_gpu_prediction_overlaps_host_and_device_streams() -> None:
    """With host (issue) and device (run) times, a model takes as long as the slower stream, not the sum of each
    op's slower side: here a launch-bound op and a compute-bound op overlap."""
    graph = compile_source(NET).graph
    table = LatencyTable.for_settings(QUICK)
    ops = [n for n in graph.nodes if n.op != "input"]
    host = {n.name: 0.02 for n in ops}
    device = {n.name: 0.001 for n in ops}
    device[ops[0].name] = 0.5  # the conv is compute-bound
    for node in ops:
        table.put(op_key(node), 1, {"ms": max(host[node.name], device[node.name]), "host_ms": host[node.name],
                                    "device_ms": device[node.name]})
    table.put(OVERHEAD, 1, {"ms": 0.01, "host_ms": 0.01, "device_ms": 0.0})
    host_total = 0.01 + sum(h - 0.01 for h in host.values())
    device_total = sum(device.values())
    assert predict_ms(table, graph, 1) == pytest.approx(max(host_total, device_total)) == pytest.approx(0.5 + 4 * 0.001)
    summed = predict_ms(table, graph, 1, mode="sum")
    assert summed == pytest.approx(0.01 + 0.49 + 4 * 0.01) and summed > predict_ms(table, graph, 1)
    assert LatencyPredictor(table, mode="sum").predict(compile_source(NET)) == pytest.approx(summed)


def test_calibration_scale_is_fitted_judged_held_out_and_applied() -> None:
    assert fit_scale([1.0, 2.0, 4.0], [1.5, 3.0, 100.0]) == 1.5  # the median ratio ignores the outlier
    assert fit_scale([1.0, 1.0], [2.0, 4.0]) == 3.0
    predicted = [1.0, 2.0, 3.0, 4.0]
    held = held_out_calibration(predicted, [0.8 * p for p in predicted])
    assert held.mape == pytest.approx(0.0, abs=1e-9) and held.n == 4
    # each fold is scaled by the other's fit: even positions by 1.0 (fitted on odd), odd by 0.5 (fitted on even)
    held = held_out_calibration(predicted, [0.5, 2.0, 1.5, 4.0])
    assert held.mape == pytest.approx((100 + 50 + 100 + 50) / 4)
    with pytest.raises(ValueError, match="at least four"):
        held_out_calibration(predicted[:3], predicted[:3])
    table, _ = hand_table()
    graph = compile_source(NET).graph
    raw = predict_ms(table, graph, 1)
    table.calibration["1"] = 0.8
    assert predict_ms(table, graph, 1) == pytest.approx(0.8 * raw)
    assert predict_ms(table, graph, 1, calibrated=False) == predict_ms(table, graph, 1, mode="sum") == raw
    assert LatencyPredictor(table).predict(compile_source(NET)) == pytest.approx(0.8 * raw)


def test_table_round_trips_and_refuses_other_settings(tmp_path: Path) -> None:
    table, _ = hand_table()
    table.calibration["1"] = 0.9
    path = table.save(tmp_path / "t" / "table.json")
    again = LatencyTable.load(path)
    assert again == table
    with pytest.raises(ValueError, match="not on .* with .*'dtype': 'bf16'"):
        again.check_compatible(Settings(threads=1, dtype="bf16"))
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "version": 0}))
    with pytest.raises(ArchError, match="build it again") as info:
        LatencyTable.load(path)
    assert str(info.value).startswith(f"{path}: error: latency table version 0 is not 2")
    path.write_text('{"version": 2, "device": "cpu",\n "entries": {,}}')  # damaged by hand
    with pytest.raises(ArchError) as info:
        LatencyTable.load(path)
    assert str(info.value).startswith(f"{path}:2:14: error: not a latency table: not valid JSON")
    path.write_text("[1, 2]")
    with pytest.raises(ArchError, match=r"error: not a latency table \(a JSON object with version"):
        LatencyTable.load(path)
    with pytest.raises(FileNotFoundError, match="task=profile_ops"):
        LatencyTable.load(tmp_path / "missing.json")


def test_predictor_measures_missing_ops_on_request(tmp_path: Path) -> None:
    table = LatencyTable.for_settings(QUICK)
    with pytest.raises(MissingEntries):
        LatencyPredictor(table).predict(compile_source(NET))
    predictor = LatencyPredictor(table, measure_missing=True, settings=QUICK, save_to=tmp_path / "grown.json")
    result = compile_source(NET)
    latency = predictor.metrics(result)["latency_ms"]
    assert latency > 0 and len(table.entries) == 1 + len(distinct_ops([result.graph]))
    assert LatencyTable.load(tmp_path / "grown.json").entries == table.entries
    assert fill_table(table, [result.graph], [1], QUICK) == 0  # nothing measured twice


def test_table_in_several_passes_keeps_each_figures_lowest(monkeypatch: pytest.MonkeyPatch) -> None:
    from search.profiling import optable
    # the overhead entry and relu: two entries, measured in three passes (each pass: overhead, then relu)
    figures = iter([{"ms": 3.0, "host_ms": 1.0}, {"ms": 9.0, "host_ms": 9.0}, {"ms": 2.0, "host_ms": 4.0},
                    {"ms": 8.0, "host_ms": 7.0}, {"ms": 5.0, "host_ms": 0.5}, {"ms": 9.5, "host_ms": 6.0}])
    monkeypatch.setattr(optable, "measure_entry", lambda *args, **kwargs: dict(next(figures)))
    table = LatencyTable.for_settings(QUICK)
    graph = compile_source("model m() { input x: [4] output x -> relu }").graph
    seen: list[tuple[int, int]] = []
    assert fill_table(table, [graph], [1], QUICK, lambda done, total: seen.append((done, total)), rounds=3) == 2
    assert table.entry(OVERHEAD, 1) == {"ms": 2.0, "host_ms": 0.5}  # each figure's lowest over the passes
    assert table.entry(op_key(graph.nodes[1]), 1) == {"ms": 8.0, "host_ms": 6.0}
    assert seen[-1] == (6, 6)
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        fill_table(table, [graph], [1], QUICK, rounds=0)


def test_error_statistics() -> None:
    stats = error_stats([11.0, 9.0, 30.0], [10.0, 10.0, 20.0])
    assert stats.mape == pytest.approx(70 / 3) and stats.max_ape == pytest.approx(50.0)
    assert stats.median_ape == pytest.approx(10.0) and stats.mean_signed == pytest.approx(50 / 3)
    assert kendall_tau([1, 2, 3], [10, 20, 30]) == 1.0 and kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
    assert kendall_tau([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(4 / 6)


def test_synthetic_mobilenets_compile_and_vary() -> None:
    texts = [mobilenet_like(seed, resolution=32, num_classes=10) for seed in range(6)]
    assert texts[0] == mobilenet_like(0, resolution=32, num_classes=10)
    graphs = [compile_source(t).graph for t in texts]
    assert all(g.output_node.shape == (10,) and g.inputs[0].shape == (3, 32, 32) for g in graphs)
    kernels = {n.attrs["kernel"] for g in graphs for n in g.nodes if n.op == "dwconv"}
    assert kernels == {3, 5, 7}
    assert len({len(g.nodes) for g in graphs}) > 1 and any(n.op == "add" for g in graphs for n in g.nodes)


def test_space_samples_are_distinct_named_architectures() -> None:
    space = EXAMPLES / "spaces" / "mobilenet.arch"
    samples = sample_space(space, 4, seed=1, size=32, num_classes=10)
    names = [name for name, _ in samples]
    assert len(set(names)) == 4 and all(name.startswith("mobilenet[") for name in names)
    assert all(r.graph.output_node.shape == (10,) and r.graph.inputs[0].shape == (3, 32, 32) for _, r in samples)
    assert len({r.summary["params"] for _, r in samples}) > 1
    with pytest.raises(ValueError, match="fewer than the 1000000000 asked for"):
        sample_space(space, 10**9)


def example_models() -> list:
    """Every example, at its own input shape when small, else at 64x64 (the test must stay quick)."""
    models = []
    for path in sorted(EXAMPLES.glob("*.arch")):
        result = compile_file(path)
        if result.summary["macs"] > 150e6:
            result = compile_file(path, options=CompileOptions(input_shape=(result.summary["input_shape"][0], 64, 64)))
        models.append(result)
    return models


def test_a_table_built_for_the_examples_predicts_each_as_the_chain_of_its_isolated_ops(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What the predictor's accuracy on the examples rests on, without timing anything: the table built for all the
    examples covers every op of each, an op isolated in its own graph costs what it costs inside the model, and a
    prediction chains the entries. A fake measurement makes each entry the call overhead plus the isolated graph's
    MACs in millions, so each prediction must be the overhead plus the model's MACs. The accuracy against measured
    latencies is a figure, not a test: `python bench/optable_rounds.py --rounds 1` prints MAPE, max APE and Kendall
    tau on the examples per trial, and MAPE's median and spread over trials."""
    from search.profiling import optable
    monkeypatch.setattr(optable, "measure_entry",
                        lambda result, *args, **kwargs: {"ms": 0.25 + result.summary["macs"] / 1e6})
    models = example_models()
    table = LatencyTable.for_settings(QUICK, rotate_mb=32.0)
    assert fill_table(table, [m.graph for m in models], [1], QUICK) == 1 + len(distinct_ops(m.graph for m in models))
    assert table.overhead(1) == 0.25
    for model in models:
        assert predict_ms(table, model.graph, 1) == pytest.approx(0.25 + model.summary["macs"] / 1e6), model.graph.name


@pytest.mark.slow
def test_profile_ops_task_builds_extends_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["task=profile_ops", "device=cpu", f"task.archs=[{EXAMPLES / 'resnet20.arch'}]", "task.synthetic=3",
            "task.synthetic_resolution=32", "task.threads=1", "task.op_min_time_s=0.002", "task.model_min_time_s=0.01",
            "task.model_rounds=1"]
    first = run_cli(*args, f"out_dir={tmp_path}")
    assert first.returncode == 0, first.stderr
    table = json.loads((tmp_path / "latency_table_cpu.json").read_text())
    assert "threads 1" in table["device"] and table["settings"]["rotate_mb"] == 32.0 and OVERHEAD in table["entries"]
    report = json.loads((tmp_path / "predictor_report.json").read_text())
    rows = report["batch_sizes"]["1"]["rows"]
    assert [r["model"] for r in rows] == ["resnet20", "mnet_0", "mnet_1", "mnet_2"]
    assert all(r["measured_ms"] > 0 and r["predicted_ms"] > 0 for r in rows)
    assert "MAPE" in first.stdout and "Kendall tau" in first.stdout and "calibrated (scale" in first.stdout
    # four models: one scale fitted on them is stored in the table, and judged on models left out of the fit
    scale = report["batch_sizes"]["1"]["calibration"]["scale"]
    assert table["calibration"] == {"1": scale} and 0.1 < scale < 10
    assert report["batch_sizes"]["1"]["calibration"]["held_out"]["n"] == 4
    # again, in this process: the table on disk is extended, nothing measured twice; other settings are refused
    args += [f"task.table={tmp_path / 'latency_table_cpu.json'}", f"out_dir={tmp_path / 'again'}"]
    with initialize_config_module(config_module=CONFIG_PACKAGE, version_base="1.3"):
        assert profile_ops_task(compose("config", args)) == 0
        assert "(0 entries measured now)" in capsys.readouterr().out
        assert (tmp_path / "again" / "predictor_report.json").exists()
        with pytest.raises(ArchError, match="build a table for these settings"):
            profile_ops_task(compose("config", [*args, "task.dtype=bf16"]))
