"""DARTS' evaluation recipe as general options: the drop_path op and trainer.drop_path's schedule, the derived
network at another size (search.derived_params), and the NAS-Bench-201 benchmark's reading of a derived cell."""
from __future__ import annotations

import importlib.util

import pytest
from omegaconf import OmegaConf
import torch
from torch import nn

from compiler import compile_source
from conftest import ROOT
from search.darts.config import darts_config
from search.data.digits import load_digits_splits
from search.training import train
from search.training.config import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

WITH_DROP_PATH = """
model m(num_classes = 10) {
    input x: [1, 8, 8]
    y = x -> conv(8, 3) -> bn -> relu
    z = y -> conv(8, 3) -> bn -> drop_path
    output (y, z) -> add -> global_avgpool -> flatten -> linear(num_classes)
}
"""


def test_drop_path_drops_whole_samples_in_training_only() -> None:
    model = compile_source("""
    model m() { input x: [4, 6, 6]
                output x -> drop_path(0.5) }""").build()
    torch.manual_seed(0)
    x = torch.randn(400, 4, 6, 6)
    out = model.train()(x)
    kept = (out != 0).flatten(1).all(1)
    dropped = (out == 0).flatten(1).all(1)
    assert bool((kept | dropped).all()) and 120 < int(dropped.sum()) < 280      # per sample, about half
    assert torch.allclose(out[kept], 2 * x[kept])                               # survivors scaled by 1 / (1 - p)
    assert torch.equal(model.eval()(x), x)
    layer = next(m for m in model.modules() if isinstance(m, nn.Dropout1d))
    layer.p = 0.0
    assert torch.equal(model.train()(x), x)


def test_trainer_raises_the_drop_path_probability_linearly_over_the_epochs() -> None:
    data = load_digits_splits()
    model = compile_source(WITH_DROP_PATH).build()
    layer = next(m for m in model.modules() if isinstance(m, nn.Dropout1d))
    seen = []
    result = train(model, data, {"budget": {"epochs": 4}, "batch_size": 256, "drop_path": 0.2, "progress": False,
                                 "evaluate_test": False}, on_epoch=lambda r: seen.append(layer.p))
    assert result.ok and seen == pytest.approx([0.0, 0.05, 0.1, 0.15])       # DARTS: prob * epoch / epochs
    plain = compile_source("""
    model m(num_classes = 10) { input x: [1, 8, 8]
                                output x -> flatten -> linear(num_classes) }""").build()
    with pytest.raises(ConfigError, match="trainer.drop_path: error: trainer.drop_path is set but the model has no "
                                          "drop_path layers"):
        train(plain, data, {"budget": {"epochs": 1}, "drop_path": 0.2, "progress": False})
    with pytest.raises(ConfigError, match=r"drop_path: error: must be in \[0, 1\)"):
        train(plain, data, {"drop_path": 1.5})


def test_darts_space_ops_carry_drop_path_and_the_derived_network_grows_with_derived_params(tmp_path) -> None:
    from omegaconf import OmegaConf

    from search.tasks.search import build_space, candidate_space

    class Data:
        data = load_digits_splits()

    cfg = OmegaConf.create({"space": {"arch": str(ROOT / "examples" / "spaces" / "darts.arch"),
                                      "params": {"channels": 4, "layers": 3}}})
    space = build_space(cfg, Data(), validate=False)
    genotype = [4] * len(space.decisions)     # sep_conv 3x3 on every edge
    small = space.compile(genotype)
    assert sum(n.op == "drop_path" for n in small.graph.nodes) == 14 * 3   # every edge's op, in every cell
    bigger = candidate_space(cfg, Data(), space, {"channels": 8, "layers": 5})
    big = bigger.compile(genotype)
    assert big.summary["params"] > 2 * small.summary["params"]
    assert sum(n.op == "drop_path" for n in big.graph.nodes) == 14 * 5
    assert candidate_space(cfg, Data(), space, {}) is space


def test_the_benchmark_reads_a_derived_nb201_cell_as_the_tables_string() -> None:
    spec = importlib.util.spec_from_file_location("darts_nb201", ROOT / "bench" / "darts_nb201.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)  # type: ignore[union-attr]
    decisions = {"edge_3_2.op": "nor_conv_1x1", "edge_1_0.op": "nor_conv_3x3", "edge_2_0.op": "nor_conv_3x3",
                 "edge_2_1.op": "nor_conv_3x3", "edge_3_0.op": "skip_connect", "edge_3_1.op": "nor_conv_3x3"}
    cell = bench.cell_string(decisions)
    assert cell == "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
    table = ROOT.parent / "shared" / "data" / "nb201-cifar10.csv"
    assert bench.load_accuracies(table)[cell] == pytest.approx(94.3733)  # the benchmark's best cell
    # every variant's overrides name settings that exist, with values the DARTS config accepts
    for name, overrides in bench.VARIANTS.items():
        node = OmegaConf.to_container(OmegaConf.from_dotlist(overrides)).get("search", {})  # type: ignore[union-attr]
        settings = darts_config(node)
        assert settings.relaxation in ("softmax", "dirichlet", "gumbel"), name
    assert darts_config({}).derive.method == "perturbation"   # `default` adds nothing to the shipped config
