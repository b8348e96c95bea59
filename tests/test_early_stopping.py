"""Stopping bad candidates early: the median stopping rule, the trainer's stop hook, the evaluator using it, and
the loop skipping the training of candidates whose cost already breaks a hard constraint."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest

from compiler.space import load_space_file
from search.early_stopping import MedianStopping
from search.evaluators.base import EvaluatorBase
from search.evaluators.train import TrainEvaluator
from search.loop import SearchLoop
from search.objectives import FAILED, FEASIBLE, INFEASIBLE, ObjectiveSet
from search.strategies.nsga2 import NSGA2
from search.strategies.random_search import RandomSearch
from search.data.digits import load_digits_splits
from search.training import train

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "examples" / "spaces" / "digits.arch"
DIGITS = {"_target_": "search.data.digits.load_digits_splits"}
QUICK_TRAIN = {"budget": {"epochs": 3}, "batch_size": 64, "cpu_threads": 1, "progress": False}


def test_median_rule_compares_the_best_so_far_with_the_median_running_average() -> None:
    rule = MedianStopping(min_epochs=2, min_candidates=3)
    for curve in ([0.5, 0.7, 0.9], [0.6, 0.8, 0.8], [0.2, 0.4, 0.6]):
        rule.observe(curve)
    # running averages at epoch 2: 0.6, 0.7, 0.3 -> median 0.6
    assert rule.averages[0] == pytest.approx([0.5, 0.6, 0.7])
    assert rule.should_stop([0.5, 0.55]) is True          # best 0.55 < 0.6
    assert rule.should_stop([0.65, 0.1]) is False         # its best so far counts, not its last epoch
    assert rule.should_stop([0.1]) is False               # grace period: never before min_epochs
    assert rule.should_stop([0.1, 0.1, 0.1, 0.1]) is False  # nobody reached epoch 4 yet: no judgement
    short = MedianStopping(min_epochs=1, min_candidates=4)
    for curve in ([0.9], [0.9], [0.9]):
        short.observe(curve)
    assert short.should_stop([0.1]) is False               # three earlier curves, four needed
    with pytest.raises(ValueError, match="min_epochs >= 1"):
        MedianStopping(min_epochs=0)


def test_trainer_stops_when_the_epoch_hook_asks() -> None:
    from compiler.api import compile_source
    data = load_digits_splits()
    model = compile_source("""model m() {
        input x: [1, 8, 8]
        output x -> flatten -> linear(10)
    }""").build()
    seen: list[int] = []

    def hook(record: dict[str, Any]) -> bool:
        seen.append(record["epoch"])
        return record["epoch"] == 2

    result = train(model, data, {"budget": {"epochs": 6}, "cpu_threads": 1, "progress": False}, on_epoch=hook)
    assert result.ok and seen == [1, 2] and len(result.history) == 2
    assert result.metrics["stopped_epoch"] == 2 and result.metrics["epochs"] == pytest.approx(2.0)
    assert result.metrics["best_epoch"] <= 2 and 0.0 < result.metrics["val_acc"] <= 1.0


def test_evaluator_stops_a_candidate_behind_the_earlier_ones_and_records_its_curve() -> None:
    space = load_space_file(str(SPACE))
    evaluator = TrainEvaluator(DIGITS, search_overrides=QUICK_TRAIN,
                               early_stopping={"min_epochs": 2, "min_candidates": 2})
    genotype = space.random_genotype(np.random.default_rng(0))
    normal = TrainEvaluator(DIGITS, search_overrides=QUICK_TRAIN)(genotype, space)
    assert len(normal["val_curve"]) == 3 and "stopped_epoch" not in normal
    for _ in range(2):  # two earlier candidates that were perfect from the first epoch
        evaluator.observe({"status": "ok", "val_curve": [1.0, 1.0, 1.0]})
    stopped = evaluator(genotype, space)
    assert stopped["status"] == "ok" and stopped["stopped_epoch"] == 2 and len(stopped["val_curve"]) == 2
    assert stopped["val_curve"] == normal["val_curve"][:2]  # same seeded training up to the stop
    for metrics in (normal, stopped):  # what objectives may name (checked before a search) is all it reports
        numeric = {k for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        assert numeric <= set(evaluator.metric_names), numeric - set(evaluator.metric_names)
    assert stopped["accuracy"] == pytest.approx(stopped["val_curve"][-1])
    assert len(evaluator.stopper.averages) == 3  # its own curve joined the reference
    with pytest.raises(ValueError, match="eval_every = 1"):
        TrainEvaluator(DIGITS, search_overrides={**QUICK_TRAIN, "eval_every": 2},
                       early_stopping={"min_epochs": 2})


class CountingEvaluator(EvaluatorBase):
    """Accuracy from the genotype; remembers what it trained and what it was shown."""

    metric_names = ("accuracy",)

    def __init__(self) -> None:
        self.trained: list[tuple[int, ...]] = []
        self.observed: list[dict[str, Any]] = []

    def __call__(self, genotype: Sequence[int], space: Any) -> dict[str, Any]:
        self.trained.append(tuple(genotype))
        return {"accuracy": 0.5 + 0.01 * sum(genotype), "val_curve": [0.5]}

    def observe(self, metrics: dict[str, Any]) -> None:
        self.observed.append(metrics)


def test_candidates_breaking_a_cost_constraint_are_not_trained(tmp_path: Path) -> None:
    space = load_space_file(str(SPACE))
    limit = sorted(space.compile(g).summary["params"] for g in list(space.genotypes())[:40])[20]
    objectives = ObjectiveSet.coerce({"objectives": ["accuracy"], "constraints": [f"params<={limit}"]})
    evaluator = CountingEvaluator()
    loop = SearchLoop(space, RandomSearch(space, seed=1, objectives=objectives), evaluator, objectives, 12,
                      tmp_path, seed=1, progress=False)
    records = loop.run()
    skipped = [r for r in records if r["status"] == "infeasible"]
    assert skipped and len(evaluator.trained) == 12 - len(skipped)
    for r in skipped:
        m = r["metrics"]
        assert m["params"] > limit and "accuracy" not in m and m["message"].startswith("not trained: params=")
        assert m["violation"] == pytest.approx((m["params"] - limit) / limit)
        assert tuple(r["genotype"]) not in evaluator.trained
        assert objectives.fitness(m) == (INFEASIBLE, -m["violation"])
    trained = [r for r in records if r["status"] == "ok"]
    assert all(objectives.fitness(r["metrics"]).tier == FEASIBLE for r in trained)
    assert objectives.fitness({"status": "error"}).tier == FAILED
    # resuming shows the evaluator every earlier result again (what early stopping learns from)
    more = CountingEvaluator()
    SearchLoop(space, RandomSearch(space, seed=1, objectives=objectives), more, objectives, 14, tmp_path, seed=1,
               progress=False).run()
    assert [m for m in more.observed] == [r["metrics"] for r in records]
    assert len(more.trained) <= 2


def test_nsga2_ranks_skipped_candidates_by_their_violation() -> None:
    space = load_space_file(str(SPACE))
    objectives = ObjectiveSet.coerce({"objectives": ["accuracy", {"name": "params", "direction": "min"}],
                                      "constraints": ["params<=1000"]})
    strategy = NSGA2(space, seed=0, objectives=objectives, population_size=4)
    genotypes = list(space.genotypes())[:4]
    for g, violation in zip(genotypes, (0.5, 2.0, 1.0, 3.0)):
        strategy.tell(g, {"status": "infeasible", "violation": violation, "params": 1000 * (1 + violation)})
    assert sorted(m.violation for m in strategy.population) == [0.5, 1.0, 2.0, 3.0]
    assert strategy.best[1] == (INFEASIBLE, -0.5)


class Kill(BaseException):
    """Stands in for a kill in the middle of a search."""


def test_resumed_search_stops_the_same_candidates_as_an_uninterrupted_one(tmp_path: Path) -> None:
    space = load_space_file(str(SPACE))
    objectives = ObjectiveSet.coerce("accuracy")

    def loop(out: Path, hook: Any = None) -> SearchLoop:
        evaluator = TrainEvaluator(DIGITS, search_overrides={**QUICK_TRAIN, "budget": {"epochs": 4}},
                                   early_stopping={"min_epochs": 1, "min_candidates": 2}, seed=5)
        return SearchLoop(space, RandomSearch(space, seed=5, objectives=objectives), evaluator, objectives, 7, out,
                          seed=5, progress=False, on_result=hook)

    def essence(records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [(tuple(r["genotype"]), r["metrics"].get("stopped_epoch"), tuple(r["metrics"]["val_curve"]))
                for r in records]

    reference = loop(tmp_path / "ref").run()
    assert any("stopped_epoch" in r["metrics"] for r in reference)  # the rule acted in this run

    def kill_at_4(record: dict[str, Any]) -> None:
        if record["index"] == 3:
            raise Kill
    with pytest.raises(Kill):
        loop(tmp_path / "run", kill_at_4).run()
    assert essence(loop(tmp_path / "run").run()) == essence(reference)
