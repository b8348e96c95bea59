"""evaluator=zero_cost (search/evaluators/zero_cost.py): each proxy recorded as a metric, the rank ensemble against
a reference pool kept in the run directory, -inf scores, determinism, refusals, and a search on the command line."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from compiler.config_values import ConfigError
from compiler.errors import ArchError
from compiler.space import load_space_file
from search import nb201
from search.evaluators.proxy_pool import ProxyScorer, draw_pool, proxy_minibatch, scored_pool
from search.evaluators.train import candidate_seed
from search.evaluators.zero_cost import REFERENCE_FILE, ZeroCostEvaluator
from search.objectives import FAILED, FEASIBLE, ObjectiveSet
from search.parallel import Context, evaluate_candidate
from search.proxies import WORST, RankEnsemble, measure_proxies
from search.proxies.ensemble import DEFAULT_ENSEMBLE
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
DIGITS = OmegaConf.load(ROOT / "conf" / "dataset" / "digits.yaml")
DEAD = nb201.string_to_genotype("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")   # the output ignores the input
ALIVE = nb201.string_to_genotype("|nor_conv_3x3~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|"
                                 "skip_connect~2|")


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def space():
    """NAS-Bench-201's cell space, tiny, specialised to the digits (as the search task specialises it)."""
    return load_space_file(str(ROOT / "examples" / "spaces" / "nb201.arch"), channels=4, cells=1, in_channels=1,
                           size=8, num_classes=10)


def evaluator(**options) -> ZeroCostEvaluator:
    return ZeroCostEvaluator(dataset=DIGITS, **{"reference": 12, "batch_size": 16, **options})


def test_every_proxy_is_the_proxy_of_the_built_network_on_the_seeded_minibatch(space) -> None:
    names = ["synflow", "naswot", "grad_norm", "snip", "jacob_cov", "zico", "params", "macs"]
    ev = evaluator(proxies=names, ensemble=False, seed=3)
    metrics = ev(ALIVE, space)
    # the outside truth: the registry's scores of the network built under the candidate's seed, on the minibatch
    # the seed draws from the training split
    compiled = space.compile(ALIVE)
    torch.manual_seed(candidate_seed(3, list(ALIVE)))
    model = compiled.build()
    x, y = proxy_minibatch(ev.data, 16, 3, torch.device("cpu"))
    expected = measure_proxies(names, model=model, inputs=x, targets=y, summary=compiled.summary, seed=3).scores
    assert {n: metrics[n] for n in names} == expected
    assert metrics["params"] == compiled.summary["params"] and metrics["status"] == "ok"
    assert set(ev.metric_names) == {*names, "zero_cost_s"} and "zero_cost" not in metrics
    assert len(x) == 16 and x.shape[1:] == (1, 8, 8)


def test_the_same_seed_gives_the_same_metrics_and_another_seed_other_ones(space) -> None:
    first, again, other = evaluator(seed=0)(ALIVE, space), evaluator(seed=0)(ALIVE, space), evaluator(seed=1)(ALIVE,
                                                                                                            space)
    strip = lambda m: {k: v for k, v in m.items() if k != "zero_cost_s"}  # noqa: E731 (a wall time)
    assert strip(first) == strip(again)
    assert first["naswot"] != other["naswot"] and first["params"] == other["params"]


def test_zero_cost_is_the_rank_of_the_candidate_in_the_reference_pool(space, tmp_path: Path) -> None:
    ev = evaluator(seed=0)
    ev.prepare(space, tmp_path)
    pool = ev.reference(space)
    assert pool.genotypes == draw_pool(space, 12, 0) and pool.scored_now == 12
    columns = {n: pool.column(n) for n in DEFAULT_ENSEMBLE.members}
    ranks = DEFAULT_ENSEMBLE.rank_scores(columns)
    for i in (0, 5, 11):   # a member of the pool gets exactly its rank in it
        assert ev(pool.genotypes[i], space)["zero_cost"] == pytest.approx(ranks[i], abs=1e-12)
    outside = next(g for g in draw_pool(space, 40, 9) if g not in pool.genotypes)
    metrics = ev(outside, space)
    by_hand = sum(sum((c < metrics[n]) + (c == metrics[n]) / 2 for c in columns[n]) / 12
                  for n in DEFAULT_ENSEMBLE.members) / 3
    assert metrics["zero_cost"] == pytest.approx(by_hand)


def test_the_reference_pool_is_kept_in_the_run_directory_and_read_back(space, tmp_path: Path, monkeypatch) -> None:
    first = evaluator()
    first.prepare(space, tmp_path)
    wanted = first(ALIVE, space)["zero_cost"]
    assert len((tmp_path / f"{REFERENCE_FILE}.jsonl").read_text().splitlines()) == 12
    calls = []
    original = ProxyScorer.__call__
    monkeypatch.setattr(ProxyScorer, "__call__", lambda self, g, s: calls.append(g) or original(self, g, s))
    resumed = evaluator()
    resumed.prepare(space, tmp_path)
    assert resumed.reference(space).scored_now == 0 and calls == []
    assert resumed(ALIVE, space)["zero_cost"] == wanted and calls == [ALIVE]
    with pytest.raises(ArchError, match="other settings"):   # a pool of another seed is not mixed in
        evaluator(seed=5).prepare(space, tmp_path)


def test_a_pool_killed_mid_scoring_resumes_without_scoring_again(space, tmp_path: Path, monkeypatch) -> None:
    scorer = ProxyScorer(("params", "naswot"), evaluator().data, 16, 0)
    genotypes = draw_pool(space, 6, 0)
    whole = scored_pool(scorer, space, genotypes, None, "pool")

    class Kill(BaseException):
        pass
    calls = []
    original = ProxyScorer.__call__

    def dies_at_the_fourth(self, genotype, space):  # noqa: ANN001, ANN202
        calls.append(genotype)
        if len(calls) == 4:
            raise Kill
        return original(self, genotype, space)
    monkeypatch.setattr(ProxyScorer, "__call__", dies_at_the_fourth)
    with pytest.raises(Kill):
        scored_pool(scorer, space, genotypes, tmp_path, "pool")
    with (tmp_path / "pool.jsonl").open("a") as torn:   # and a line cut short by the kill
        torn.write('{"index": 3, "geno')
    calls.clear()
    monkeypatch.setattr(ProxyScorer, "__call__", lambda self, g, s: calls.append(g) or original(self, g, s))
    resumed = scored_pool(scorer, space, genotypes, tmp_path, "pool")
    assert calls == genotypes[3:] and resumed.scored_now == 3
    assert resumed.scores == whole.scores and resumed.genotypes == whole.genotypes


@pytest.mark.parametrize("field, value", [("naswot", "x"), ("naswot", True), ("seconds", None)])
def test_a_kept_pool_record_with_a_bad_value_is_a_located_error(space, tmp_path: Path, field: str, value) -> None:
    scorer = ProxyScorer(("params", "naswot"), evaluator().data, 16, 0)
    genotypes = draw_pool(space, 3, 0)
    scored_pool(scorer, space, genotypes, tmp_path, "pool")
    lines = (tmp_path / "pool.jsonl").read_text().splitlines()
    record = json.loads(lines[1])
    if field == "seconds":
        record["seconds"] = value
    else:
        record["metrics"][field] = value
    lines[1] = json.dumps(record)
    (tmp_path / "pool.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ArchError, match=r"pool.jsonl:2:1: error: a record that is not this pool's"):
        scored_pool(scorer, space, genotypes, tmp_path, "pool")


def test_a_network_a_proxy_cannot_measure_stays_ok_ranks_last_and_is_recorded_as_null(space) -> None:
    ev = evaluator(proxies=["naswot", "jacob_cov", "params"])
    pool = ev.reference(space)
    columns = {n: pool.column(n) for n in ev.proxies}
    metrics = ev(DEAD, space)
    assert metrics["naswot"] is None and metrics["jacob_cov"] is None and metrics["params"] > 0
    assert metrics["unscored"] == ["naswot", "jacob_cov"] and metrics["status"] == "ok"
    # -inf sits below every measured network of the pool (ties with the pool's own -inf count half)
    expected = DEFAULT_ENSEMBLE.score({"naswot": WORST, "jacob_cov": WORST, "params": metrics["params"]}, columns)
    assert metrics["zero_cost"] == pytest.approx(expected) and math.isfinite(metrics["zero_cost"])
    assert metrics["zero_cost"] < ev(ALIVE, space)["zero_cost"]
    # through the loop's evaluation: still ok (no "diverged"), and JSON-able
    ranked = ObjectiveSet.coerce([{"name": "naswot", "direction": "max"}])
    outcome = evaluate_candidate(Context(space, ev, ranked), DEAD)
    assert outcome.metrics["status"] == "ok" and outcome.metrics["naswot"] is None
    json.dumps(outcome.metrics, allow_nan=False)
    # an objective on that proxy ranks it with the failed ones; the ensemble ranks it as a number
    assert ranked.fitness(outcome.metrics).tier == FAILED
    assert ObjectiveSet.coerce("zero_cost").fitness(outcome.metrics).tier == FEASIBLE


def test_weights_make_the_ensemble(space) -> None:
    ev = evaluator(proxies=["naswot", "params"], weights=[3, 1])
    assert ev.ensemble == RankEnsemble({"naswot": 3.0, "params": 1.0})
    pool = ev.reference(space)
    metrics = ev(ALIVE, space)
    assert metrics["zero_cost"] == pytest.approx(ev.ensemble.score(metrics, {n: pool.column(n) for n in ev.proxies}))


def test_the_shipped_config_is_the_shipped_ensemble() -> None:
    config = OmegaConf.load(ROOT / "conf" / "evaluator" / "zero_cost.yaml")
    assert tuple(config.proxies) == DEFAULT_ENSEMBLE.members and config.weights is None
    assert set(DEFAULT_ENSEMBLE.weights.values()) == {1.0}
    assert ZeroCostEvaluator(dataset=DIGITS).ensemble == DEFAULT_ENSEMBLE


@pytest.mark.parametrize("options, key, message", [
    ({"proxies": ["synflw"]}, "evaluator.proxies", "unknown proxy 'synflw'; did you mean 'synflow'?"),
    ({"proxies": ["naswot", "naswot"]}, "evaluator.proxies", "named twice"),
    ({"proxies": []}, "evaluator.proxies", "no proxy"),
    ({"proxies": ["naswot", "params"], "weights": [1.0]}, "evaluator.weights", "1 weight(s) for 2 proxies"),
    ({"proxies": ["naswot", "params"], "weights": [1.0, 0.0]}, "evaluator.weights", "positive"),
    ({"batch_size": 1}, "evaluator.batch_size", "must be >= 2"),
    ({"reference": 0}, "evaluator.reference", "must be >= 1"),
    ({"device": "tpu"}, "evaluator.device", ""),
])
def test_what_cannot_work_is_refused_naming_the_key(options, key, message) -> None:
    with pytest.raises(ConfigError) as caught:
        ZeroCostEvaluator(dataset=DIGITS, **options)
    assert caught.value.key == key and message in caught.value.message
    assert ZeroCostEvaluator(dataset=DIGITS, proxies=["synflow"], batch_size=1).batch_size == 1   # data-free


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_scores_the_same_network_on_the_same_images(space) -> None:
    names = ["synflow", "naswot", "grad_norm", "params"]
    cpu = evaluator(proxies=names)(ALIVE, space)
    cuda = evaluator(proxies=names, device="cuda")(ALIVE, space)
    for n in names:
        assert cuda[n] == pytest.approx(cpu[n], rel=1e-3), n


def test_search_on_the_command_line_maximises_the_ensemble_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["+search=evolution", "objective=zero_cost", "evaluator.reference=8", "search.progress=false",
            "task.export_best=false", f"out_dir={out}"]
    first = run_cli(*args, "search.budget=4")
    assert first.returncode == 0, first.stderr
    records = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(r["status"] == "ok" for r in records)
    for r in records:
        assert 0 <= r["metrics"]["zero_cost"] <= 1 and r["metrics"]["params"] > 0
        assert {"naswot", "jacob_cov", "zero_cost_s"} <= set(r["metrics"])
    best = max(r["metrics"]["zero_cost"] for r in records)
    assert f"best of 4: zero_cost={best:.4g}" in first.stdout
    reference = (out / f"{REFERENCE_FILE}.jsonl").read_text()
    assert len(reference.splitlines()) == 8
    resumed = run_cli(*args, "search.budget=6")   # the budget may grow on resume
    assert resumed.returncode == 0, resumed.stderr
    again = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert len(again) == 6 and again[:4] == records
    assert (out / f"{REFERENCE_FILE}.jsonl").read_text() == reference   # read back, not scored again


def test_an_unknown_proxy_on_the_command_line_is_a_located_error(tmp_path: Path) -> None:
    result = run_cli("+search=random", "evaluator=zero_cost", "evaluator.proxies=[naswot,synflw]",
                     f"out_dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert "evaluator.proxies: error: unknown proxy 'synflw'; did you mean 'synflow'?" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_parallel_worker_reads_the_reference_pool_the_main_process_prepared(tmp_path: Path, monkeypatch) -> None:
    from functools import partial

    from hydra import compose, initialize_config_dir

    from search.tasks.search import build_space, evaluation_context, evaluation_parts, worker_config

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["+search=random", "objective=zero_cost", "evaluator.reference=6"])
    _, main, _ = evaluation_parts(cfg)
    space = build_space(cfg, main)
    main.prepare(space, tmp_path)   # as the search task does before the loop starts the workers
    genotype = space.random_genotype(np.random.default_rng(1))
    wanted = main(genotype, space)["zero_cost"]
    calls = []
    original = ProxyScorer.__call__
    monkeypatch.setattr(ProxyScorer, "__call__", lambda self, g, s: calls.append(g) or original(self, g, s))
    worker = partial(evaluation_context, worker_config(cfg), space=space, run_dir=tmp_path)()   # what a worker runs
    assert worker.evaluator is not main and calls == []
    assert worker.evaluator(genotype, space)["zero_cost"] == wanted and calls == [genotype]
