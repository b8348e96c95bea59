"""Zero-cost move proposal (search.warmup.moves, Strategy.screen_with): each child is the screen's best of M distinct
untried mutations, M=1 is today's strategy draw for draw, a resumed run proposes and scores what the uninterrupted
one did, and bad values are located errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from compiler.config_values import ConfigError
from compiler.errors import ArchError
from compiler.space import load_space_file
from search.budget import BudgetedSearch, run_search
from search.evaluators.proxy_pool import ProxyScorer
from search.evaluators.table import TableEvaluator
from search.loop import SearchLoop
from search.objectives import ObjectiveSet
from search.schema import WarmupConfig, search_config
from search.proxies.ensemble import DEFAULT_ENSEMBLE
from search.warmup import ProxyScreen, Warmup
from tests.conftest import run_cli

from test_warmup import ROOT, SMALL, TABLE, build, drive, toy   # SMALL: 13 one-decision neighbours per genotype

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def coarse(children):
    """A deterministic screen with many ties (so "the first drawn among equals" is tested too)."""
    return [float(-(sum(g) % 3)) for g in children]


# ---- the strategy hook ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["evolution", "nsga2"])
def test_the_child_is_the_screens_best_of_m_distinct_untried_mutations(name) -> None:
    strategy = build(name, seed=5)
    calls: list[tuple[list, list]] = []
    strategy.screen_with(lambda children: calls.append((list(children), coarse(children))) or coarse(children), 4)
    mutations: list[tuple] = []   # (parent, child proposed, genotypes tried before)
    mutate = strategy._mutate

    def watched(parent):  # noqa: ANN001, ANN202
        tried = set(strategy.tried)
        mutations.append((parent, mutate(parent), tried))
        return mutations[-1][1]
    strategy._mutate = watched
    history = run_search(strategy, toy, budget=60, seed=5)
    assert len(history) == 60 and len(calls) == len(mutations) > 20
    for (children, scores), (parent, child, tried) in zip(calls, mutations):
        assert 1 <= len(children) == len(set(children)) <= 4   # fewer when few untried neighbours are left
        assert all(c in SMALL.neighbours(parent) and c not in tried for c in children)
        assert child == children[scores.index(max(scores))]   # the best, the first drawn among equals
    assert sum(len(children) == 4 for children, _ in calls) > 0.8 * len(calls)
    assert len({r.genotype for r in history}) == 60 and strategy.tried >= {r.genotype for r in history}


def test_with_every_mutation_tried_it_proposes_a_known_one_for_the_cache_to_answer() -> None:
    strategy = build("evolution", seed=1)
    calls = []
    strategy.screen_with(lambda children: calls.append(children) or [0.0] * len(children), 8)
    parent = (0, 0, 0, 0, 0)
    strategy.tried = set(SMALL.neighbours(parent))
    assert strategy._mutate(parent) in SMALL.neighbours(parent) and calls == []
    strategy.tried = set(SMALL.neighbours(parent)[2:])   # two left: screened, though fewer than asked
    strategy._mutate(parent)
    assert sorted(calls[0]) == SMALL.neighbours(parent)[:2]


@pytest.mark.parametrize("name", ["evolution", "evolution_textbook", "nsga2"])
def test_one_move_is_todays_strategy_draw_for_draw(name) -> None:
    calls = []
    plain, screened = build(name, seed=9), build(name, seed=9)
    screened.screen_with(lambda children: calls.append(children) or [0.0] * len(children), 1)
    assert [r.genotype for r in run_search(plain, toy, 50, seed=9)] == \
        [r.genotype for r in run_search(screened, toy, 50, seed=9)]
    assert calls == [] and "tried" not in screened.state_dict()
    more = build(name, seed=9)
    more.screen_with(coarse, 6)
    assert [r.genotype for r in run_search(more, toy, 50, seed=9)] != \
        [r.genotype for r in run_search(build(name, seed=9), toy, 50, seed=9)]


def test_a_strategy_that_does_not_mutate_refuses_a_screen() -> None:
    with pytest.raises(ValueError, match="RandomSearch proposes no mutations"):
        build("random").screen_with(coarse, 4)
    build("random").screen_with(coarse, 1)   # off: nothing to refuse
    with pytest.raises(ValueError, match="moves must be >= 1"):
        build("evolution").screen_with(coarse, 0)


def test_the_tried_genotypes_are_part_of_the_state() -> None:
    def strategy():
        made = build("evolution", seed=3)
        made.screen_with(coarse, 5)
        return made
    full = drive(BudgetedSearch(strategy(), budget=60, seed=3), 60)
    head_search = BudgetedSearch(strategy(), budget=60, seed=3)
    head = drive(head_search, 25)   # among the screened children
    state = json.loads(json.dumps(head_search.state_dict()))
    assert len(state["strategy"]["tried"]) >= 25
    resumed = BudgetedSearch(strategy(), budget=60, seed=3)
    resumed.load_state_dict(state)
    assert head + drive(resumed, 35) == full


# ---- the screen: scores kept, the ensemble ranked against the pool -------------------------------------------------
class FakeScorer:
    """ProxyScorer's interface, with fixed scores (naswot, jacob_cov, params) per genotype."""

    names = ("naswot", "jacob_cov", "params")
    seed, batch_size, device = 0, 32, torch.device("cpu")

    def __init__(self, table):  # noqa: ANN001
        self.table, self.calls = table, []

    def __call__(self, genotype, space):  # noqa: ANN001, ANN204
        self.calls.append(genotype)
        return dict(zip(self.names, self.table[genotype])), 0.5


def test_the_ensemble_ranks_the_children_against_the_pool_when_there_is_one(tmp_path: Path) -> None:
    a, b = (0, 0, 0, 0, 0), (1, 0, 0, 0, 0)
    scorer = FakeScorer({a: (100.0, 1.0, 1.0), b: (1.0, 2.0, 2.0)})
    # among the two, b wins two members of three; against a pool that both beat on jacob_cov and params, those tie
    # and a's naswot, above the whole pool where b's is near its bottom, decides
    pool = {"naswot": [10.0 * i for i in range(10)], "jacob_cov": [0.0] * 10, "params": [0.5] * 10}
    within = ProxyScreen(scorer, "ensemble", SMALL)([a, b])
    against = ProxyScreen(scorer, "ensemble", SMALL, tmp_path, pool)([a, b])
    assert within[1] > within[0] and against[0] > against[1]
    assert against == [pytest.approx(DEFAULT_ENSEMBLE.score(dict(zip(scorer.names, scorer.table[g])), pool))
                       for g in (a, b)]
    assert ProxyScreen(scorer, "params", SMALL)([a, b]) == [1.0, 2.0]   # one proxy: its own score
    # kept in the run directory: read back, not scored again; another ranking there is refused
    scorer.calls.clear()
    again = ProxyScreen(scorer, "ensemble", SMALL, tmp_path, pool)
    assert again([b, a]) == against[::-1] and scorer.calls == [] and again.scored_now == 0
    with pytest.raises(ArchError, match="screen of other settings") as caught:
        ProxyScreen(scorer, "ensemble", SMALL, tmp_path)
    assert caught.value.span.file == str(tmp_path / "screen.json") and "delete the file" in caught.value.hint
    # scores without the settings they were taken with are not trusted either; a damaged header is located
    (tmp_path / "screen.json").unlink()
    with pytest.raises(ArchError, match="has no screen.json beside it"):
        ProxyScreen(scorer, "ensemble", SMALL, tmp_path, pool)
    (tmp_path / "screen.json").write_text('{"settings": ')
    with pytest.raises(ArchError, match="not valid JSON") as caught:
        ProxyScreen(scorer, "ensemble", SMALL, tmp_path, pool)
    assert caught.value.span.line == 1


# ---- the keys -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("moves, message", [(0, "must be >= 1, not 0"), (2.5, "expected an integer"),
                                            ("many", "expected an integer")])
def test_moves_is_checked(moves, message) -> None:
    node = {"strategy": {"_target_": "search.strategies.evolution.RegularizedEvolution"}, "warmup": {"moves": moves}}
    with pytest.raises(ConfigError) as caught:
        search_config(node)
    assert caught.value.key == "search.warmup.moves" and message in caught.value.message


# ---- the loop: scores kept, exact resume --------------------------------------------------------------------------
class Kill(BaseException):
    """Stands in for SIGKILL inside the process."""


def _loop(out: Path, budget: int = 30, hook=None, proxy: str = "params", pool: int = 0, moves: int = 4):  # noqa: ANN001
    space = load_space_file(str(ROOT / "examples" / "spaces" / "nb201.arch"))
    strategy = build("evolution", space=space, seed=7)
    warmup = Warmup.of(WarmupConfig(proxy=proxy, pool=pool, moves=moves), lambda: None, 7)
    return SearchLoop(space, strategy, TableEvaluator(TABLE), ObjectiveSet.coerce("accuracy"), budget, out, seed=7,
                      progress=False, on_result=hook, warmup=warmup)


def _essence(records):
    return [(tuple(r["genotype"]), r["metrics"]["accuracy"]) for r in records]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("pool", [0, 20])
def test_moves_resume_equals_an_uninterrupted_run_and_scores_no_child_again(tmp_path: Path, monkeypatch,
                                                                             pool) -> None:
    reference = _loop(tmp_path / "ref", pool=pool).run()
    screened = _lines(tmp_path / "ref" / "screen.jsonl")
    assert len(screened) > 2 * (30 - 10)   # up to 4 children per mutation after the 10 first members
    assert (tmp_path / "ref" / "warmup.jsonl").exists() == (pool > 0)
    assert json.loads((tmp_path / "ref" / "screen.json").read_text())["settings"]["against_pool"] == (pool > 0)
    params = {tuple(r["genotype"]): r["metrics"]["params"] for r in screened}
    proposed = [tuple(r["genotype"]) for r in reference[10:]]
    assert all(g in params for g in proposed)   # every child was screened
    assert sum(params[g] == max(params.values()) for g in proposed) >= 1

    def hook(record):  # noqa: ANN001, ANN202
        if record["index"] + 1 == 17:   # among the screened children
            raise Kill
    with pytest.raises(Kill):
        _loop(tmp_path / "run", pool=pool, hook=hook).run()
    before = {tuple(r["genotype"]) for r in _lines(tmp_path / "run" / "screen.jsonl")}
    calls = []
    original = ProxyScorer.__call__
    monkeypatch.setattr(ProxyScorer, "__call__", lambda self, g, s: calls.append(tuple(g)) or original(self, g, s))
    resumed = _loop(tmp_path / "run", pool=pool).run()
    assert _essence(resumed) == _essence(reference)
    assert calls and not set(calls) & before   # only children screened after the stop were scored
    strip = [{k: v for k, v in r.items() if k not in ("time", "seconds")} for r in screened]
    assert [{k: v for k, v in r.items() if k not in ("time", "seconds")}
            for r in _lines(tmp_path / "run" / "screen.jsonl")] == strip
    with pytest.raises(ArchError, match="of other settings"):
        _loop(tmp_path / "run", budget=31, proxy="macs", pool=pool).run()


# ---- the command line -------------------------------------------------------------------------------------------
def test_moves_on_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["+search=evolution", "space=nb201", "evaluator=table", "search.warmup.proxy=params",
            "search.warmup.moves=4", "search.progress=false", "task.export_best=false", f"out_dir={out}"]
    first = run_cli(*args, "search.budget=14")
    assert first.returncode == 0, first.stderr
    assert "moves: the best of 4 mutations by params" in first.stdout and "warm start" not in first.stdout
    assert not (out / "warmup.json").exists()   # moves without a pool
    assert json.loads((out / "screen.json").read_text())["settings"]["proxy"] == "params"
    assert len(_lines(out / "screen.jsonl")) >= 4 and len(_lines(out / "history.jsonl")) == 14
    assert "moves: 4 screening(s) of up to 4 mutations by params" in first.stdout   # the log


@pytest.mark.parametrize("override, message", [
    ("search.warmup.moves=0", "search.warmup.moves: error: must be >= 1, not 0"),
    ("search.warmup.moves=two", "search.warmup.moves: error: expected an integer"),
])
def test_a_bad_moves_value_on_the_command_line_is_a_located_error(tmp_path: Path, override, message) -> None:
    result = run_cli("+search=evolution", "space=nb201", "evaluator=table", override, f"out_dir={tmp_path / 'run'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr


def test_moves_for_a_strategy_that_does_not_mutate_is_refused(tmp_path: Path) -> None:
    result = run_cli("+search=random", "space=nb201", "evaluator=table", "search.warmup.moves=4",
                     f"out_dir={tmp_path / 'run'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "search.warmup.moves: error: random (RandomSearch) proposes no mutations" in result.stderr


# ---- the bench ----------------------------------------------------------------------------------------------------
def test_bench_screens_mutating_strategies_from_the_cache_and_charges_the_cells_screened(tmp_path: Path, capsys,
                                                                                          monkeypatch) -> None:
    import argparse

    import numpy as np

    monkeypatch.syspath_prepend(str(ROOT))
    from bench import nb201 as bench
    from bench import zero_cost_nb201 as scores_bench
    from search import nb201

    key = scores_bench.settings_key(argparse.Namespace(batch_size=32, score_seed=0, device=torch.device("cpu")))
    rng = np.random.default_rng(0)
    cells = [nb201.genotype_to_string(g) for g in nb201.SPACE.genotypes()]   # every cell: nothing scored on demand
    cache = tmp_path / "cache.jsonl"
    cache.write_text("".join(json.dumps({"arch": c, "key": key, "scores": {"params": float(rng.integers(1000))},
                                         "seconds": {"compile": 0.25, "build": 0.5, "params": 0.125}}) + "\n"
                             for c in cells))
    out = tmp_path / "out.json"
    argv = ["--table", str(TABLE), "--strategies", "evolution,random", "--references", "", "--queries", "16",
            "--budgets", "8,16", "--seeds", "2", "--warmup", "params", "--pool", "10", "--moves", "4",
            "--cache", str(cache), "--json", str(out)]
    assert bench.main(argv) == 0
    results = json.loads(out.read_text())
    assert set(results) == {"evolution", "random", "evolution+params", "random+params", "evolution+params+m4"}
    moved = results["evolution+params+m4"]
    assert moved["scored_on_demand"] == 0 and 6 <= moved["screened"] <= 4 * 6   # 6 children after 10 members
    assert moved["screen_seconds"] == pytest.approx(2 * moved["screened"] * 0.375)   # params: no build
    assert "screen_seconds" not in results["evolution+params"]
    # the same runs by hand: the screen's choice is the best of the children by params
    scores = bench.score_cache(cache, None)
    pools = bench.warm_pools("params", 10, range(2), cache, None, scores)[0]
    screens = []
    curves = bench.best_so_far("evolution", TableEvaluator(TABLE), 16, range(2), pools,
                               lambda seed: screens.append(bench.CachedScreen("params", scores)) or screens[-1], 4)
    assert curves[:, -1].mean() == pytest.approx(moved["mean"])
    assert np.mean([len(s.cells) for s in screens]) == moved["screened"]
    assert "evolution+params+m4" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="each M at least 2"):
        bench.main([*argv[:-4], "--moves", "1"])
