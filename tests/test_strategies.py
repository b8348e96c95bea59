import importlib
import inspect
import json
import pkgutil
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

import search.darts
import search.strategies
from search import nb201
from search.budget import BudgetedSearch, run_search
from search.evaluators.table import TableEvaluator
from search.objectives import ObjectiveSet, pareto_indices
from compiler.ir.space import Space
from search.schema import build as build_from_config, one_shot_strategy
from search.strategies.base import Strategy

ROOT = Path(__file__).resolve().parents[1]
NB201_CSV = ROOT.parent / "shared" / "data" / "nb201-cifar10.csv"
# the sampling strategies (darts is one-shot: its candidates come from a supernet, tested in test_darts*.py and
# test_one_shot.py); the configs are the one registry of strategies
CONFIGS = sorted(p.stem for p in (ROOT / "conf" / "search").glob("*.yaml")
                 if one_shot_strategy(OmegaConf.load(p).search) is None)
SMALL = Space.from_sizes(4, 3, 5, 2, 4)  # 480 genotypes
TARGET = (3, 0, 2, 1, 1)


def toy(genotype):
    """Analytic objective with one optimum (0 at TARGET) and an interaction between decisions 0 and 2."""
    distance = sum((a - b) ** 2 for a, b in zip(genotype, TARGET))
    return {"accuracy": -float(distance) - 0.5 * (genotype[0] == genotype[2]), "status": "ok"}


def build(name, space=SMALL, seed=0, objectives="accuracy", **options):
    """The strategy of conf/search/NAME.yaml, built as the search task builds it, with ``options`` changed."""
    config = OmegaConf.load(ROOT / "conf" / "search" / f"{name}.yaml").search.strategy
    make = build_from_config(OmegaConf.merge(config, options), "search.strategy", _partial_=True)
    return make(space=space, seed=seed, objectives=objectives)


def test_space_helpers():
    rng = np.random.default_rng(0)
    assert SMALL.size == 480
    g = SMALL.random_genotype(rng)
    around = SMALL.neighbours(g)
    assert len(around) == sum(n - 1 for n in (4, 3, 5, 2, 4)) and len(set(around)) == len(around)
    assert all(sum(a != b for a, b in zip(g, n)) == 1 for n in around)
    for _ in range(50):
        assert SMALL.mutate(g, rng) in around


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_finds_a_good_toy_genotype_without_paying_twice(name):
    history = run_search(build(name), toy, budget=60, seed=0)
    genotypes = [r.genotype for r in history]
    assert len(genotypes) == 60 and len(set(genotypes)) == 60
    assert max(r.metrics["accuracy"] for r in history) >= -2.0  # the optimum is 0; the space's mean is -9.3


@pytest.mark.parametrize("name", CONFIGS)
def test_resume_gives_the_same_future(name):
    """Checkpoint mid-run (through JSON), rebuild, load: the rest of the run equals the uninterrupted one."""
    def drive(search, steps):
        out = []
        for _ in range(steps):
            g = search.next()
            metrics = toy(g) if sum(g) % 7 else {"status": "failed", "error": "simulated crash"}
            search.record(g, metrics)
            out.append(g)
        return out

    whole = BudgetedSearch(build(name, seed=3), budget=40, seed=3)
    full = drive(whole, 40)
    first = BudgetedSearch(build(name, seed=3), budget=40, seed=3)
    head = drive(first, 17)
    state = json.loads(json.dumps(first.state_dict()))
    resumed = BudgetedSearch(build(name, seed=3), budget=40, seed=3)
    resumed.load_state_dict(state)
    assert head + drive(resumed, 23) == full
    assert resumed.next() is None and resumed.spent == 40


@pytest.mark.parametrize("name, objectives", [*[(n, "accuracy") for n in CONFIGS],
                                              ("optuna_tpe", {"objectives": ["accuracy"],
                                                              "constraints": ["accuracy>=-3"]})])
def test_resume_with_candidates_in_flight_gives_the_same_future(name, objectives):
    """As several workers run it (search.workers=3): three candidates out at a time, results told in proposal order;
    stopped with three in flight, resumed as the loop resumes (the in-flight ones evaluated first, not asked again)."""
    def drive(search, steps, in_flight=()):
        queue, out = list(in_flight), []
        while True:
            while len(queue) < 3 and (g := search.next()) is not None:
                queue.append(g)
            if not queue or len(out) == steps:
                break
            g = queue.pop(0)
            search.record(g, toy(g) if sum(g) % 7 else {"status": "failed", "error": "simulated crash"})
            out.append(g)
        return out, queue

    full, _ = drive(BudgetedSearch(build(name, seed=3, objectives=objectives), budget=45, seed=3), 45)
    first = BudgetedSearch(build(name, seed=3, objectives=objectives), budget=45, seed=3)
    head, in_flight = drive(first, 20)
    assert len(in_flight) == 3
    state = json.loads(json.dumps(first.state_dict()))
    resumed = BudgetedSearch(build(name, seed=3, objectives=objectives), budget=45, seed=3)
    resumed.load_state_dict(state)
    resumed.pending.update(in_flight)
    rest, _ = drive(resumed, 45, in_flight)
    assert head + rest == full


@pytest.mark.parametrize("name", CONFIGS)
def test_failed_candidates_rank_last(name):
    failing = {g for g in (SMALL.random_genotype(np.random.default_rng(s)) for s in range(100))}

    def evaluate(g):
        return {"status": "failed", "error": "OOM"} if g in failing or g == TARGET else toy(g)

    history = run_search(build(name, seed=1), evaluate, budget=50, seed=1)
    assert any(r.metrics["status"] == "failed" for r in history)
    ok = [r for r in history if r.metrics["status"] == "ok"]
    assert max(r.metrics["accuracy"] for r in ok) >= -3.0


@pytest.mark.parametrize("name", ["random", "evolution", "rl", "local", "local_textbook"])
def test_nb201_table_search_beats_the_median(name):
    evaluator = TableEvaluator(NB201_CSV)
    history = run_search(build(name, space=nb201.SPACE, seed=0), evaluator, budget=30, seed=0)
    assert max(r.metrics["accuracy"] for r in history) > 0.92  # the table's median is 90.75 %


class Stubborn(Strategy):
    """Always proposes the same genotype: the budget wrapper must neither loop forever nor pay twice."""

    def _propose(self):
        return (0, 0)

    def _observe(self, genotype, fitness, metrics):
        pass


def test_budget_wrapper_answers_repeats_from_cache_and_exhausts_the_space():
    space = Space.from_sizes(2, 3)
    calls = []

    def evaluate(g):
        calls.append(g)
        return {"accuracy": float(sum(g)), "status": "ok"}

    search = BudgetedSearch(Stubborn(space), budget=100, max_repeats=5)
    history = run_search(Stubborn(space), evaluate, budget=100, max_repeats=5)
    assert sorted(calls) == sorted(r.genotype for r in history) and len(set(calls)) == 6  # all, each once
    assert history[0].genotype == (0, 0)
    assert history[1].genotype in space.neighbours((0, 0))  # fallback: a neighbour of the best so far
    assert search.next() == (0, 0) and search.next() != (0, 0)


def test_budget_wrapper_rejects_double_records():
    search = BudgetedSearch(build("random"), budget=3)
    g = search.next()
    search.record(g, toy(g))
    with pytest.raises(ValueError, match="already evaluated"):
        search.record(g, toy(g))


def test_nsga2_approaches_the_pareto_front():
    space = Space.from_sizes(6, 6, 6)

    def evaluate(g):  # accuracy grows with size, params too: a trade-off
        return {"accuracy": float(sum(g)) - 0.3 * (g[0] - g[1]) ** 2, "params": float(g[0] + g[1] + g[2]) ** 2,
                "status": "ok"}

    objectives = ObjectiveSet.coerce(["accuracy", "min:params"])
    strategy = build("nsga2", space, seed=0, objectives=objectives, population_size=10)
    history = run_search(strategy, evaluate, budget=80)
    front = [history[i].genotype for i in pareto_indices([r.metrics for r in history], objectives)]
    # On the true front g[0] == g[1]: the search should have found most sums with that property.
    on_front = {g for g in front if g[0] == g[1]}
    assert len(on_front) >= 5 and len(on_front) / len(front) >= 0.8


def test_load_state_checks_strategy_and_space():
    state = build("evolution").state_dict()
    with pytest.raises(ValueError, match="belongs to strategy 'RegularizedEvolution'"):
        build("random").load_state_dict(state)
    with pytest.raises(ValueError, match="another search space"):
        build("evolution", space=Space.from_sizes(2, 2)).load_state_dict(state)


def test_rl_state_dtypes_are_read_as_data_not_looked_up_on_torch():
    state = json.loads(json.dumps(build("rl").state_dict()))
    assert json.dumps(state).count('"dtype": "float32"') > 0   # the controller's weights
    build("rl").load_state_dict(state)
    text = json.dumps(state).replace('"dtype": "float32"', '"dtype": "load"', 1)   # torch.load is no dtype
    with pytest.raises(ValueError, match="unknown tensor dtype 'load'"):
        build("rl").load_state_dict(json.loads(text))


@pytest.mark.parametrize("name", CONFIGS)
def test_every_strategy_config_builds_its_strategy(name):
    strategy = build(name)
    target = OmegaConf.load(ROOT / "conf" / "search" / f"{name}.yaml").search.strategy._target_
    assert isinstance(strategy, Strategy) and f"{type(strategy).__module__}.{type(strategy).__name__}" == target


def test_every_strategy_class_has_a_config():
    """The configs are the registry: a strategy class that no conf/search/*.yaml names cannot be chosen."""
    for package in (search.strategies, search.darts):  # the sampling and the one-shot strategies
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{module.name}")
    def subclasses(cls: type) -> set[type]:
        return {c for s in cls.__subclasses__() for c in (s, *subclasses(s))}
    classes = {f"{c.__module__}.{c.__name__}" for c in subclasses(Strategy)
               if c.__module__.startswith("search.") and not inspect.isabstract(c)}
    targets = {OmegaConf.load(path).search.strategy._target_ for path in (ROOT / "conf" / "search").glob("*.yaml")}
    assert classes == targets and "search.darts.strategy.Darts" in targets


def test_batch_ask_proposes_distinct_genotypes_for_guided_local():
    strategy = build("local", space=nb201.SPACE)
    for g in strategy.ask(5):
        strategy.tell(g, {"accuracy": float(sum(g)), "status": "ok"})
    batch = strategy.ask(8)
    assert len(set(batch)) == 8


@pytest.mark.parametrize("order", ["random", "model"])
def test_hill_climb_orders_reach_the_toy_optimum(order):
    strategy = build("local_textbook", SMALL, seed=2, order=order, init_samples=5)  # LocalSearch, hill climbing
    history = run_search(strategy, toy, budget=80, seed=2)
    assert max(r.metrics["accuracy"] for r in history) == 0.0  # TARGET itself
    with pytest.raises(ValueError, match="order must be one of"):
        build("local_textbook", SMALL, order="steepest")
