"""search.include_default (Strategy.start_with): the space's default genotype, the network a space is written around
(airbench.arch: airbench94), is the first candidate of every strategy that draws at random, in place of its first
draw and ahead of a warm start's seeds; it resumes exactly, and a strategy without random draws refuses it."""
from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from compiler.config_values import ConfigError
from compiler.ir.space import Space
from compiler.space import load_space_file
from search.budget import BudgetedSearch
from search.evaluators.table import TableEvaluator
from search.loop import SearchLoop
from search.objectives import ObjectiveSet
from search.schema import build as build_from_config, one_shot_strategy, search_config
from search.strategies.rl import Reinforce
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT.parent / "shared" / "data" / "nb201-cifar10.csv"
DRAWING = sorted(p.stem for p in (ROOT / "conf" / "search").glob("*.yaml")   # rl samples from its policy and
                 if p.stem != "rl" and one_shot_strategy(OmegaConf.load(p).search) is None)   # DARTS derives
SMALL = Space.from_sizes(4, 3, 5, 2, 4)
OBJECTIVES = ObjectiveSet.coerce("accuracy")


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def build(name: str, space: Space = SMALL, seed: int = 0):  # noqa: ANN201
    config = OmegaConf.load(ROOT / "conf" / "search" / f"{name}.yaml").search.strategy
    return build_from_config(config, "search.strategy", _partial_=True)(space=space, seed=seed, objectives="accuracy")


def proposals(strategy, steps: int) -> list[tuple[int, ...]]:  # noqa: ANN001
    """``steps`` proposals of a budgeted search, each told a toy fitness (best at all ones)."""
    search, out = BudgetedSearch(strategy, steps), []
    for _ in range(steps):
        g = search.next()
        search.record(g, {"accuracy": -float(sum((a - 1) ** 2 for a in g)), "status": "ok"})
        out.append(g)
    return out


def test_the_default_genotype_is_every_decision_at_its_first_option() -> None:
    assert SMALL.default_genotype == (0, 0, 0, 0, 0)
    airbench = load_space_file(str(ROOT / "examples" / "spaces" / "airbench.arch"))
    assert airbench.compile(airbench.default_genotype).summary["params"] == 1_972_792   # airbench94's (whole check:
    # tests/test_airbench_space.py)


@pytest.mark.parametrize("name", DRAWING)
def test_every_drawing_strategy_proposes_the_default_first(name: str) -> None:
    started = build(name)
    started.start_with([SMALL.default_genotype])
    run = proposals(started, 10)
    assert run[0] == SMALL.default_genotype
    assert run != proposals(build(name), 10)   # it changed what the strategy proposes, not only its label


def test_random_search_proposes_the_default_in_place_of_its_first_draw() -> None:
    started = build("random")
    started.start_with([SMALL.default_genotype])
    plain = proposals(build("random"), 6)
    assert SMALL.default_genotype not in plain   # (else the comparison below would say nothing)
    assert proposals(started, 6) == [SMALL.default_genotype, *plain[:5]]


def test_the_default_comes_ahead_of_a_warm_starts_seeds_and_only_once() -> None:
    strategy = build("evolution")
    ranked = [(1, 1, 1, 1, 1), (0, 0, 0, 0, 0), (2, 2, 2, 1, 2)]
    strategy.seed_with(ranked)
    strategy.start_with([SMALL.default_genotype])
    assert strategy.seeds == [(0, 0, 0, 0, 0), (1, 1, 1, 1, 1), (2, 2, 2, 1, 2)]
    assert proposals(strategy, 3) == [(0, 0, 0, 0, 0), (1, 1, 1, 1, 1), (2, 2, 2, 1, 2)]


def test_a_strategy_that_samples_from_a_policy_refuses() -> None:
    with pytest.raises(ValueError, match="Reinforce draws no candidates at random"):
        Reinforce(SMALL, seed=0, objectives="accuracy").start_with([SMALL.default_genotype])


def test_the_key_is_checked() -> None:
    base = OmegaConf.load(ROOT / "conf" / "search" / "evolution.yaml").search
    assert search_config(base).include_default is False
    assert search_config(OmegaConf.merge(base, {"include_default": True})).include_default is True
    with pytest.raises(ConfigError, match="search.include_default"):
        search_config(OmegaConf.merge(base, {"include_default": "sometimes"}))


# ---- the loop: first record, exact resume ------------------------------------------------------------------------
class Kill(BaseException):
    """Stands in for SIGKILL inside the process."""


def _loop(out: Path, name: str, hook=None) -> SearchLoop:  # noqa: ANN001
    space = load_space_file(str(ROOT / "examples" / "spaces" / "nb201.arch"))
    return SearchLoop(space, build(name, space, seed=1), TableEvaluator(TABLE), OBJECTIVES, 12, out, seed=1,
                      progress=False, include_default=True, on_result=hook)


def _kill_after(n: int):  # noqa: ANN202
    def hook(record: dict) -> None:
        if record["index"] + 1 == n:
            raise Kill
    return hook


@pytest.mark.parametrize("name", ["nsga2", "optuna_tpe"])
def test_the_loop_evaluates_the_default_first_and_resumes_exactly(tmp_path: Path, name: str) -> None:
    reference = _loop(tmp_path / "ref", name).run()
    assert reference[0]["genotype"] == [0] * 6 and len({tuple(r["genotype"]) for r in reference}) == 12
    with pytest.raises(Kill):   # right after the default: a resumed run must not propose it again
        _loop(tmp_path / "early", name, hook=_kill_after(1)).run()
    with pytest.raises(Kill):
        _loop(tmp_path / "late", name, hook=_kill_after(5)).run()
    for out in ("early", "late"):
        resumed = _loop(tmp_path / out, name).run()
        assert [r["genotype"] for r in resumed] == [r["genotype"] for r in reference]


def test_the_command_line_starts_from_the_default_and_rl_refuses(tmp_path: Path) -> None:
    proc = run_cli("+search=evolution", "space=nb201", "evaluator=table", "search.budget=3", "search.progress=false",
                   "search.include_default=true", "task.export_best=false", f"out_dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "starting from the default" in proc.stdout
    first = (tmp_path / "run" / "history.jsonl").read_text().splitlines()[0]
    assert '"genotype": [0, 0, 0, 0, 0, 0]' in first
    refused = run_cli("+search=rl", "space=nb201", "evaluator=table", "search.budget=3",
                      "+search.include_default=true", f"out_dir={tmp_path / 'rl'}")
    assert refused.returncode == 2
    assert refused.stderr.strip().startswith("search.include_default: error: rl (Reinforce) samples every candidate")
