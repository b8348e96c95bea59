"""Warm start (search.warmup, search/warmup.py, Strategy.seed_with): the pool drawn and ranked, every strategy
seeded with it, the keys checked, an exact resume that scores nothing again, the command line and the bench."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from compiler.config_values import ConfigError
from compiler.errors import ArchError
from compiler.ir.space import Space
from compiler.space import load_space_file
from search import nb201
from search.budget import BudgetedSearch, run_search
from search.evaluators.proxy_pool import ProxyScorer, ScoredPool, draw_pool
from search.evaluators.table import TableEvaluator
from search.loop import SearchLoop
from search.objectives import ObjectiveSet
from search.proxies import WORST
from search.schema import WarmupConfig, build as build_from_config, one_shot_strategy, search_config
from search.strategies.rl import Reinforce
from search.warmup import Warmup, rank_pool
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT.parent / "shared" / "data" / "nb201-cifar10.csv"
CONFIGS = sorted(p.stem for p in (ROOT / "conf" / "search").glob("*.yaml")   # the sampling strategies (DARTS has
                 if one_shot_strategy(OmegaConf.load(p).search) is None)   # no random draws to seed)
SMALL = Space.from_sizes(4, 3, 5, 2, 4)
OBJECTIVES = ObjectiveSet.coerce("accuracy")


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def build(name, space=SMALL, seed=0):
    config = OmegaConf.load(ROOT / "conf" / "search" / f"{name}.yaml").search.strategy
    return build_from_config(config, "search.strategy", _partial_=True)(space=space, seed=seed, objectives="accuracy")


def toy(genotype):
    return {"accuracy": -float(sum((a - 1) ** 2 for a in genotype)), "status": "ok"}


def drive(search, steps):
    """``steps`` proposals of a budgeted search, each recorded with the toy fitness; the genotypes proposed."""
    out = []
    for _ in range(steps):
        g = search.next()
        search.record(g, toy(g))
        out.append(g)
    return out


# ---- the pool ---------------------------------------------------------------------------------------------------
def test_the_pool_is_distinct_seeded_and_the_same_for_a_space_of_the_same_sizes() -> None:
    pool = draw_pool(nb201.SPACE, 50, seed=4)
    assert len(set(pool)) == 50 and pool == draw_pool(nb201.SPACE, 50, seed=4) != draw_pool(nb201.SPACE, 50, seed=5)
    compiled_space = load_space_file(str(ROOT / "examples" / "spaces" / "nb201.arch"), channels=4, cells=1, size=8)
    assert draw_pool(compiled_space, 50, seed=4) == pool   # what the bench draws is what the search draws
    everything = draw_pool(SMALL, SMALL.size, seed=0)      # most of the space: a seeded permutation
    assert sorted(everything) == sorted(SMALL.genotypes())
    with pytest.raises(ValueError, match="the space has 480"):
        draw_pool(SMALL, 481, seed=0)


def test_ranking_best_first_with_ties_in_pool_order_and_minus_infinity_last() -> None:
    genotypes = [(i,) for i in range(5)]
    pool = ScoredPool(genotypes, {"params": [2.0, WORST, 5.0, 2.0, 1.0]}, [0.0] * 5)
    assert rank_pool(pool, "params") == [(2,), (0,), (3,), (4,), (1,)]
    columns = {"naswot": [1.0, 2.0, 3.0, 4.0, WORST], "jacob_cov": [5.0, 4.0, 3.0, 2.0, 1.0],
               "params": [1.0, 1.0, 2.0, 2.0, 3.0]}
    # rank sums over the three proxies: 8.5, 8.5, 10.5, 10.5, 7 (the ties differ in float by the order of addition)
    assert rank_pool(ScoredPool(genotypes, columns, [0.0] * 5), "ensemble") == [(2,), (3,), (0,), (1,), (4,)]


# ---- every strategy takes the seeds -------------------------------------------------------------------------------
FIRST = {"random": None, "evolution": 10, "evolution_textbook": 10, "local": 5, "local_textbook": 10, "nsga2": 20,
         "optuna_tpe": 10}   # how many of the ranked seeds each proposes first (random: all of them)


def test_every_sampling_strategy_but_rl_has_its_count_of_seeds_proposed_first() -> None:
    assert sorted(FIRST) == [name for name in CONFIGS if name != "rl"]   # rl: no random draws (the next test)


@pytest.mark.parametrize("name", sorted(FIRST))
def test_every_strategy_proposes_the_proxys_best_first_where_it_would_draw_at_random(name) -> None:
    ranked = draw_pool(SMALL, 30, seed=11)
    strategy = build(name)
    strategy.seed_with(ranked)
    history = run_search(strategy, toy, budget=25, seed=0)
    proposed = [r.genotype for r in history]
    first = FIRST[name] or 25
    assert proposed[:first] == ranked[:first]


def test_rl_learns_the_pools_ranking_before_its_first_proposal() -> None:
    # a ranking by how many edges are nor_conv_3x3 (option 3): the warm controller proposes more of them
    ranked = sorted(draw_pool(nb201.SPACE, 60, seed=2), key=lambda g: -g.count(3))
    cold, warm = Reinforce(nb201.SPACE, seed=0), Reinforce(nb201.SPACE, seed=0)
    warm.seed_with(ranked)
    assert warm.baseline == 0.5 and warm.seen == [] and warm.told == set()   # the pool is no result
    convs = {name: np.mean([s.ask().count(3) for _ in range(200)]) for name, s in (("cold", cold), ("warm", warm))}
    # measured: 1.19 -> 1.88 conv3x3 edges per proposal
    assert convs["cold"] == pytest.approx(6 / 5, abs=0.3) and convs["warm"] > convs["cold"] + 0.4


@pytest.mark.parametrize("name", ["evolution", "local", "optuna_tpe"])
def test_the_unused_seeds_are_part_of_the_state(name) -> None:
    ranked = draw_pool(SMALL, 30, seed=11)

    whole = build(name, seed=3)
    whole.seed_with(ranked)
    full = drive(BudgetedSearch(whole, budget=30, seed=3), 30)
    first = build(name, seed=3)
    first.seed_with(ranked)
    head_search = BudgetedSearch(first, budget=30, seed=3)
    head = drive(head_search, 3)   # in the middle of the seeded start
    state = json.loads(json.dumps(head_search.state_dict()))
    assert state["strategy"]["seeds"] == [list(g) for g in first.seeds] and first.seeds
    resumed = BudgetedSearch(build(name, seed=3), budget=30, seed=3)   # not seeded: the state holds the seeds
    resumed.load_state_dict(state)
    assert head + drive(resumed, 27) == full


# ---- the keys -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("warmup, key, message", [
    ({"proxy": "synflw"}, "search.warmup.proxy", "unknown proxy 'synflw'; did you mean 'synflow'?"),
    ({"pool": -1}, "search.warmup.pool", "must be >= 0"),
    ({"pool": 2.5}, "search.warmup.pool", "expected an integer"),
    ({"batch_size": 1}, "search.warmup.batch_size", "must be >= 2"),
    ({"pooll": 3}, "search.warmup.pooll", "did you mean 'pool'?"),
])
def test_warmup_keys_are_checked(warmup, key, message) -> None:
    node = {"strategy": {"_target_": "search.strategies.random_search.RandomSearch"}, "warmup": warmup}
    with pytest.raises(ConfigError) as caught:
        search_config(node)
    assert caught.value.key == key and message in caught.value.message


def test_defaults_are_off_with_the_shipped_ensemble() -> None:
    config = search_config({"strategy": {"_target_": "search.strategies.random_search.RandomSearch"}})
    assert config.warmup == WarmupConfig(proxy="ensemble", pool=0, batch_size=32, device="cpu")


def test_a_pool_larger_than_the_space_or_data_the_space_does_not_take_is_refused() -> None:
    space = load_space_file(str(ROOT / "examples" / "spaces" / "nb201.arch"), channels=4, cells=1, size=8)
    with pytest.raises(ConfigError, match="only 15,625 architectures"):
        Warmup.of(WarmupConfig(proxy="params", pool=20000), lambda: None, 0).check_space(space)
    from search.data import load_dataset
    digits = OmegaConf.load(ROOT / "conf" / "dataset" / "digits.yaml")
    warmup = Warmup.of(WarmupConfig(proxy="naswot", pool=5), lambda: load_dataset(digits), 0)
    with pytest.raises(ConfigError, match=r"digits \(\[1, 8, 8\]\), but the space takes \[3, 8, 8\]"):
        warmup.check_space(space)
    with pytest.raises(ConfigError) as caught:
        Warmup.of(WarmupConfig(proxy="params", pool=5, device="tpu"), lambda: None, 0)
    assert caught.value.key == "search.warmup.device"


# ---- the loop: resume -------------------------------------------------------------------------------------------
class Kill(BaseException):
    """Stands in for SIGKILL inside the process."""


def _loop(out: Path, name: str = "local", budget: int = 25, hook=None, proxy: str = "params", pool: int = 40):  # noqa: ANN001
    space = load_space_file(str(ROOT / "examples" / "spaces" / "nb201.arch"))
    strategy = build(name, space=space, seed=7)
    warmup = Warmup.of(WarmupConfig(proxy=proxy, pool=pool), lambda: None, 7)
    return SearchLoop(space, strategy, TableEvaluator(TABLE), OBJECTIVES, budget, out, seed=7, progress=False,
                      on_result=hook, warmup=warmup)


def _essence(records):
    return [(tuple(r["genotype"]), r["metrics"]["accuracy"], r["status"]) for r in records]


@pytest.mark.parametrize("name", ["local", "evolution"])
def test_warm_resume_equals_an_uninterrupted_run_and_scores_nothing_again(tmp_path: Path, monkeypatch, name) -> None:
    reference = _loop(tmp_path / "ref", name).run()
    pool = [json.loads(line) for line in (tmp_path / "ref" / "warmup.jsonl").read_text().splitlines()]
    by_params = sorted(pool, key=lambda r: -r["metrics"]["params"])   # stable: ties in pool order
    first = 5 if name == "local" else 10
    assert [r["genotype"] for r in reference[:first]] == [r["genotype"] for r in by_params[:first]]

    def hook(record):  # noqa: ANN001, ANN202
        if record["index"] + 1 == 3:   # inside the seeded start
            raise Kill
    with pytest.raises(Kill):
        _loop(tmp_path / "run", name, hook=hook).run()
    scored = (tmp_path / "run" / "warmup.jsonl").read_text()
    calls = []
    original = ProxyScorer.__call__
    monkeypatch.setattr(ProxyScorer, "__call__", lambda self, g, s: calls.append(g) or original(self, g, s))
    resumed = _loop(tmp_path / "run", name).run()
    assert calls == [] and _essence(resumed) == _essence(reference)
    assert (tmp_path / "run" / "warmup.jsonl").read_text() == scored
    with pytest.raises(ArchError, match="other settings"):   # another pool in the same directory is refused
        _loop(tmp_path / "run", name, budget=26, proxy="macs").run()


def test_the_pool_is_not_counted_in_the_budget(tmp_path: Path) -> None:
    records = _loop(tmp_path, "random", budget=12, pool=40).run()
    assert len(records) == 12 and len((tmp_path / "warmup.jsonl").read_text().splitlines()) == 40


# ---- the command line -------------------------------------------------------------------------------------------
def test_warm_start_on_the_command_line_then_resumed(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["+search=local", "space=nb201", "evaluator=table", "search.warmup.proxy=params", "search.warmup.pool=30",
            "search.progress=false", "task.export_best=false", f"out_dir={out}"]
    first = run_cli(*args, "search.budget=8")
    assert first.returncode == 0, first.stderr
    assert "warm start: the best of 30 by params" in first.stdout
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    pool = [json.loads(line) for line in (out / "warmup.jsonl").read_text().splitlines()]
    assert len(history) == 8 and len(pool) == 30
    best = sorted(pool, key=lambda r: -r["metrics"]["params"])[:5]   # local: the start is the proxy's best 5
    assert [r["genotype"] for r in history[:5]] == [r["genotype"] for r in best]
    assert json.loads((out / "warmup.json").read_text())["settings"]["proxy"] == "params"
    scored = (out / "warmup.jsonl").read_text()
    resumed = run_cli(*args, "search.budget=10")
    assert resumed.returncode == 0, resumed.stderr
    again = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert len(again) == 10 and again[:8] == history and (out / "warmup.jsonl").read_text() == scored
    changed = run_cli(*args[:3], "search.warmup.proxy=macs", *args[4:], "search.budget=10")
    assert changed.returncode == 2 and "search.warmup.proxy" in changed.stderr   # run.json: another configuration


def test_a_misspelt_proxy_on_the_command_line_is_a_located_error(tmp_path: Path) -> None:
    result = run_cli("+search=random", "space=nb201", "evaluator=table", "search.warmup.proxy=synflw",
                     "search.warmup.pool=10", f"out_dir={tmp_path / 'run'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "search.warmup.proxy: error: unknown proxy 'synflw'; did you mean 'synflow'?" in result.stderr


# ---- the bench ----------------------------------------------------------------------------------------------------
def test_bench_runs_warm_and_cold_side_by_side_from_the_cache(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from bench import nb201 as bench
    from bench import zero_cost_nb201 as scores_bench

    seeds, size = range(2), 6
    key = scores_bench.settings_key(argparse.Namespace(batch_size=32, score_seed=0, device=torch.device("cpu")))
    cells = {nb201.genotype_to_string(g) for s in seeds for g in draw_pool(nb201.SPACE, size, s)}
    rng = np.random.default_rng(0)
    lines = [json.dumps({"arch": c, "key": key, "scores": {"params": float(rng.integers(1000))},
                         "seconds": {"compile": 0.25, "build": 0.5, "params": 0.125}}) for c in sorted(cells)]
    cache = tmp_path / "cache.jsonl"
    cache.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.json"
    argv = ["--table", str(TABLE), "--strategies", "local,random", "--references", "", "--queries", "8",
            "--budgets", "4,8", "--seeds", "2", "--warmup", "params", "--pool", str(size), "--cache", str(cache),
            "--json", str(out)]
    assert bench.main(argv) == 0
    printed = capsys.readouterr().out
    assert f"{len(cells)} of {len(cells)} cells cached" in printed
    results = json.loads(out.read_text())
    assert set(results) == {"local", "random", "local+params", "random+params"}
    assert results["local+params"]["pool_seconds"] == pytest.approx(2 * size * 0.375)   # params: no build
    assert "pool_seconds" not in results["local"] and results["random+params"]["budgets"]["8"]["n"] == 2
    # the warm random search's first proposals are each pool's best by params: its best at 1 query is theirs
    accuracy = TableEvaluator(TABLE)
    scores = {json.loads(line)["arch"]: json.loads(line)["scores"]["params"] for line in lines}
    tops = [max(draw_pool(nb201.SPACE, size, s), key=lambda g: scores[nb201.genotype_to_string(g)]) for s in seeds]
    curves = bench.best_so_far("random", accuracy, 1, seeds,
                               bench.warm_pools("params", size, seeds, cache, None)[0])
    assert curves[:, 0].tolist() == [accuracy(g)["accuracy"] for g in tops]


def test_bench_pool_time_counts_the_computation_that_gave_each_proxy(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from bench.nb201 import cell_seconds

    recorded = {"compile": 1.0, "build": 2.0, "jacobian": 4.0, "params": 0.5, "synflow": 8.0}
    assert cell_seconds(recorded, ["params"]) == 1.5                          # no network is built
    assert cell_seconds(recorded, ["naswot"]) == 7.0                          # a by-product of the jacobian
    assert cell_seconds(recorded, ["naswot", "jacob_cov", "params"]) == 7.5   # the ensemble: one forward/backward
    assert cell_seconds({**recorded, "naswot": 3.0}, ["naswot"]) == 6.0       # its own pass when it had one
    with pytest.raises(SystemExit, match="no time"):
        cell_seconds(recorded, ["zico"])
