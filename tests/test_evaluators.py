"""What the search frame asks of evaluators and measurements (search/evaluators/base.py): every configured one
has it, the defaults do nothing, and what they declare to report is what they report."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from compiler.space import load_space_file
from search.evaluators.base import Evaluator, EvaluatorBase, Measurement
from search.evaluators.cost import CostEvaluator
from search.evaluators.table import TableEvaluator
from search.parallel import reported_metrics
from search.profiling.optable import LatencyTable
from search.profiling.predictor import LatencyPredictor
from search.schema import build

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT.parent / "shared" / "data" / "nb201-cifar10.csv"


def _config(*overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=["+search=random", *overrides])


METRICS = {   # what each configured evaluator declares to report
    "cost": ("params", "macs", "activation_mb"),
    "table": ("accuracy",),   # the CSV's metric columns
    "train": ("accuracy", "val_acc", "best_val_acc", "best_epoch", "stopped_epoch", "train_loss", "train_acc", "steps",
              "epochs", "train_time_s", "eval_time_s", "images_per_s", "batch_size", "cpu_threads"),
    "zero_cost": ("naswot", "jacob_cov", "params", "zero_cost", "zero_cost_s"),   # the proxies, ensemble, seconds
}


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "conf" / "evaluator").glob("*.yaml")))
def test_every_evaluator_config_builds_an_evaluator(name: str) -> None:
    evaluator = build(_config(f"evaluator={name}", "space=nb201").evaluator, "evaluator")
    assert isinstance(evaluator, Evaluator) and isinstance(evaluator, EvaluatorBase)
    assert evaluator.metric_names == METRICS[name]
    assert not evaluator.measures_time and not evaluator.observes_results


def test_every_measuring_profile_builds_a_measurement() -> None:
    profile = build(_config("profile=cpu").profile, "profile")
    assert isinstance(profile, Measurement) and profile.measures_time
    assert profile.metric_names == ("latency_ms", "latency_p90_ms", "throughput", "peak_mem_mb")
    predictor = LatencyPredictor(LatencyTable("cpu", {}))
    assert isinstance(predictor, Measurement) and not predictor.measures_time
    assert predictor.metric_names == ("latency_ms",)


def test_the_defaults_do_nothing_and_cannot_train(tmp_path: Path) -> None:
    space = load_space_file(str(ROOT / "examples" / "spaces" / "nb201.arch"))
    cost = CostEvaluator()
    cost.observe({"accuracy": 1.0})
    cost.observe_all([])
    assert cost.data is None and cost.final((0,) * len(space.decisions), space, tmp_path) is None
    assert not any(tmp_path.iterdir())
    genotype = (1,) * len(space.decisions)
    metrics, summary = cost(genotype, space), space.compile(genotype).summary
    assert metrics == {"params": summary["params"], "macs": summary["macs"], "status": "ok",
                       "activation_mb": pytest.approx(summary["activation_memory_mb"]["fp32_batch1"], abs=5e-4)}
    assert summary["params"] > 0 and summary["macs"] > 0 and metrics["activation_mb"] > 0
    batch = CostEvaluator(batch_size=32)(genotype, space)
    assert batch["activation_mb"] == pytest.approx(32 * metrics["activation_mb"])


def test_reported_metrics_name_each_metric_once_by_where_it_comes_from() -> None:
    table = TableEvaluator(TABLE)
    assert table.metric_names == ("accuracy",)  # the CSV's metric columns
    profile = build(_config("profile=cpu").profile, "profile")
    assert reported_metrics(table, [profile]) == {
        "cost": ("params", "macs", "activation_mb"),
        "profile": ("latency_ms", "latency_p90_ms", "throughput", "peak_mem_mb"), "evaluator": ("accuracy",)}
    assert reported_metrics(CostEvaluator(), [])["evaluator"] == ()  # its metrics are the cost's


def test_an_evaluator_that_times_candidates_refuses_parallel_workers() -> None:
    from compiler.config_values import ConfigError
    from search.tasks.search import check_parallel

    class Timing(EvaluatorBase):
        metric_names = ("latency_ms",)
        measures_time = True

    cfg = _config()
    check_parallel(cfg, 1, Timing(), [])
    with pytest.raises(ConfigError, match=r"^search.workers: error: search.workers=2 with Timing: it times"):
        check_parallel(cfg, 2, Timing(), [])
    check_parallel(cfg, 2, CostEvaluator(), [])


def test_a_finished_final_training_with_the_same_settings_is_read_back_not_repeated(tmp_path: Path,
                                                                                     monkeypatch) -> None:
    import json

    import numpy as np

    from search.evaluators.train import TrainEvaluator
    space = load_space_file(str(ROOT / "examples" / "spaces" / "digits.arch"))
    genotype = space.random_genotype(np.random.default_rng(0))
    quick = {"budget": {"epochs": 1}, "batch_size": 64, "cpu_threads": 1, "progress": False}

    def evaluator(**final):
        return TrainEvaluator({"_target_": "search.data.digits.load_digits_splits"}, search_overrides=quick,
                              final_overrides={**quick, **final})
    first = evaluator().final(genotype, space, tmp_path)
    assert first["status"] == "ok" and (tmp_path / "weights.pt").is_file()
    weights = (tmp_path / "weights.pt").read_bytes()
    trained: list[int] = []
    again = evaluator(progress=True)   # the display is no setting of the training
    real_train = again._train
    monkeypatch.setattr(again, "_train", lambda *a, **k: trained.append(1) or real_train(*a, **k))
    assert again.final(genotype, space, tmp_path) == json.loads((tmp_path / "metrics.json").read_text())
    assert trained == [] and (tmp_path / "weights.pt").read_bytes() == weights
    other = evaluator(budget={"epochs": 2})   # another final budget: trained anew
    monkeypatch.setattr(other, "_train", lambda *a, **k: trained.append(1) or TrainEvaluator._train(other, *a, **k))
    assert other.final(genotype, space, tmp_path)["epochs"] == 2 and trained == [1]
    (tmp_path / "weights.pt").unlink()   # weights gone: trained anew even with the same settings
    assert other.final(genotype, space, tmp_path)["epochs"] == 2 and trained == [1, 1]
    # a final training cut short (changed settings) leaves neither the old metrics nor the old weights behind, so
    # the old settings cannot read back a mismatched pair later
    def killed(*args, **kwargs):
        raise KeyboardInterrupt
    cut = evaluator(budget={"epochs": 3})
    monkeypatch.setattr(cut, "_train", killed)
    with pytest.raises(KeyboardInterrupt):
        cut.final(genotype, space, tmp_path)
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / "weights.pt").exists()


def test_candidates_log_no_epoch_lines_and_the_final_training_does(tmp_path: Path, caplog) -> None:
    import logging

    import numpy as np

    from search.evaluators.train import TrainEvaluator
    space = load_space_file(str(ROOT / "examples" / "spaces" / "digits.arch"))
    genotype = space.random_genotype(np.random.default_rng(1))
    quick = {"budget": {"epochs": 2}, "batch_size": 64, "cpu_threads": 1, "progress": False}
    evaluator = TrainEvaluator({"_target_": "search.data.digits.load_digits_splits"}, search_overrides=quick,
                               final_overrides=quick)
    with caplog.at_level(logging.DEBUG, logger="search.training.trainer"):
        metrics = evaluator(genotype, space)
        candidate = [(r.levelno, r.getMessage()) for r in caplog.records if r.getMessage().startswith("epoch")]
        caplog.clear()
        evaluator.final(genotype, space, tmp_path)
        final = [(r.levelno, r.getMessage()) for r in caplog.records if r.getMessage().startswith("epoch")]
    assert len(metrics["val_curve"]) == 2   # the curve is in the record ...
    assert [level for level, _ in candidate] == [logging.DEBUG] * 2   # ... so its epochs are not on the console
    assert [level for level, _ in final] == [logging.INFO] * 2 and final[1][1].startswith("epoch 2/2")
