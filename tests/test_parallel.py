"""Parallel evaluation (search.workers > 1): same results as one worker where the strategy allows it, results
recorded in proposal order whatever finishes first, exact resume with candidates in flight, clear errors."""
from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from compiler.space import load_space_file
from conftest import run_cli
from search.evaluators.base import EvaluatorBase
from search.evaluators.table import TableEvaluator
from search.evaluators.train import TrainEvaluator
from search.loop import SearchLoop
from search.objectives import ObjectiveSet
from search.parallel import Context, visible_gpus
from search.strategies.evolution import RegularizedEvolution
from search.strategies.random_search import RandomSearch
from search.tasks.search import evaluation_context, worker_config

ROOT = Path(__file__).resolve().parents[1]
SPACE = str(ROOT / "examples" / "spaces" / "nb201.arch")
TABLE = ROOT.parent / "shared" / "data" / "nb201-cifar10.csv"
OBJECTIVES = ObjectiveSet.coerce("accuracy")
DIGITS = {"_target_": "search.data.digits.load_digits_splits"}


class UnevenTable(TableEvaluator):
    """The NAS-Bench-201 lookup, taking 0-40 ms by genotype: later proposals often finish first."""

    def __call__(self, genotype, space):  # noqa: ANN001, ANN204
        time.sleep(0.01 * (sum(genotype) % 5))
        return {**super().__call__(genotype, space), "pid": os.getpid(),
                "gpu": os.environ.get("CUDA_VISIBLE_DEVICES", "")}


class DyingEvaluator(EvaluatorBase):
    def __call__(self, genotype, space):  # noqa: ANN001, ANN204
        os._exit(3)  # a worker killed mid-evaluation (out of memory, a crash in a kernel, ...)


def table_context(evaluator: str = "uneven", note_gpu_in: Path | None = None) -> Context:
    """A worker's context: module-level, so that the pool can pickle a partial of it."""
    if note_gpu_in is not None:  # every worker builds its context at start, whether or not it gets a task
        (note_gpu_in / str(os.getpid())).write_text(os.environ.get("CUDA_VISIBLE_DEVICES", ""))
    space = load_space_file(SPACE)
    made = {"uneven": lambda: UnevenTable(TABLE), "dying": DyingEvaluator}[evaluator]()
    return Context(space, made, OBJECTIVES)


def _loop(out: Path, strategy: type = RegularizedEvolution, workers: int = 2, budget: int = 16, hook=None,  # noqa: ANN001
          evaluator: str = "uneven", devices: tuple[str, ...] = (), note_gpu_in: Path | None = None) -> SearchLoop:
    context = table_context(evaluator)
    return SearchLoop(context.space, strategy(context.space, seed=5, objectives=OBJECTIVES), context.evaluator,
                      OBJECTIVES, budget, out, seed=5, progress=False, on_result=hook, workers=workers,
                      worker_context=partial(table_context, evaluator, note_gpu_in), devices=devices)


def _essence(records: list[dict]) -> list[tuple]:
    return [(tuple(r["genotype"]), r["metrics"]["accuracy"], r["status"], r["arch"]) for r in records]


class Kill(BaseException):
    pass


def test_random_search_with_two_workers_records_what_one_worker_records(tmp_path: Path) -> None:
    one = _loop(tmp_path / "one", RandomSearch, workers=1).run()
    two = _loop(tmp_path / "two", RandomSearch, workers=2).run()
    assert _essence(two) == _essence(one) and len(two) == 16
    assert os.getpid() not in {r["metrics"]["pid"] for r in two}  # evaluated in the workers
    assert {r["metrics"]["pid"] for r in one} == {os.getpid()}


def test_parallel_run_is_reproducible_and_resumes_exactly_with_candidates_in_flight(tmp_path: Path) -> None:
    reference = _loop(tmp_path / "ref").run()
    assert _essence(_loop(tmp_path / "again").run()) == _essence(reference)  # timing does not change the run
    out = tmp_path / "run"
    seen: dict[str, list] = {}

    def hook(record: dict) -> None:
        if record["index"] + 1 == 7:
            seen["in_flight"] = json.loads((out / "checkpoint.json").read_text())["in_flight"]
            raise Kill
    with pytest.raises(Kill):
        _loop(out, hook=hook).run()
    assert len(seen["in_flight"]) == 2  # two candidates were being evaluated when the run stopped
    resumed = _loop(out).run()
    assert _essence(resumed) == _essence(reference)
    assert [r["genotype"] for r in reference[7:9]] == seen["in_flight"]


def test_resume_replays_a_journal_line_newer_than_the_checkpoint_with_workers(tmp_path: Path) -> None:
    reference = _loop(tmp_path / "ref").run()
    out = tmp_path / "run"
    saved = {}

    def hook(record: dict) -> None:
        if record["index"] + 1 == 5:
            saved["checkpoint"] = (out / "checkpoint.json").read_text()
        if record["index"] + 1 == 6:
            raise Kill
    with pytest.raises(Kill):
        _loop(out, hook=hook).run()
    (out / "checkpoint.json").write_text(saved["checkpoint"])  # killed between the journal and checkpoint writes
    assert _essence(_loop(out).run()) == _essence(reference)


def test_a_worker_that_dies_stops_the_run_with_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"a worker process died while candidates \[.*\] and others were being "
                                           r"evaluated .* run the same command again to resume"):
        _loop(tmp_path / "run", evaluator="dying", budget=4).run()


def test_workers_are_spread_over_the_gpus_one_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    notes = tmp_path / "gpus"
    notes.mkdir()
    records = _loop(tmp_path / "run", RandomSearch, workers=2, budget=8, devices=("5", "7"), note_gpu_in=notes).run()
    at_start = {int(f.name): f.read_text() for f in notes.iterdir()}
    assert sorted(at_start.values()) == ["5", "7"]  # one GPU each
    assert all(r["metrics"]["gpu"] == at_start[r["metrics"]["pid"]] for r in records)  # and kept it


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3, 4,6")
    assert visible_gpus() == ["3", "4"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert visible_gpus() == ["0", "1"]


def test_workers_are_checked() -> None:
    context = table_context()
    strategy = RandomSearch(context.space, seed=0, objectives=OBJECTIVES)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        SearchLoop(context.space, strategy, context.evaluator, OBJECTIVES, 4, Path("unused"), workers=0)
    with pytest.raises(ValueError, match="needs worker_context"):
        SearchLoop(context.space, strategy, context.evaluator, OBJECTIVES, 4, Path("unused"), workers=2)


def test_a_worker_knows_exactly_the_results_it_is_told() -> None:
    evaluator = TrainEvaluator(DIGITS, early_stopping={"min_epochs": 2, "min_candidates": 1})
    evaluator.observe({"val_curve": [0.1, 0.2]})  # a result this worker saw earlier but was not told now
    evaluator.observe_all([{"val_curve": [0.5, 0.7]}, {"status": "error", "val_curve": [0.9]}])
    assert evaluator.stopper is not None and evaluator.stopper.averages == [[0.5, 0.6]]
    assert evaluator.stopper.should_stop([0.3, 0.4]) and not evaluator.stopper.should_stop([0.3, 0.65])


def test_an_evaluator_sent_to_a_worker_leaves_its_data_behind() -> None:
    evaluator = TrainEvaluator(DIGITS)
    assert evaluator.data.input_shape == (1, 8, 8)
    copy = pickle.loads(pickle.dumps(evaluator))
    assert copy._data is None and copy.data.input_shape == (1, 8, 8)  # loaded again where it is used


@pytest.mark.slow   # ~30 s; two workers against one in process: test_random_search_with_two_workers_...
def test_cli_two_workers_give_the_one_worker_history_and_measured_latency_is_refused(tmp_path: Path) -> None:
    args = ["+search=random", "search.budget=4", "evaluator.search_overrides.budget.epochs=2",
            "evaluator.final_overrides.budget.epochs=1", "search.progress=false", "task.export_best=false"]
    runs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        proc = run_cli(*args, f"search.workers={workers}", f"out_dir={out}")
        assert proc.returncode == 0, proc.stderr[-3000:]
        lines = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
        runs[workers] = [(r["genotype"], r["metrics"]["accuracy"], r["metrics"]["val_curve"]) for r in lines]
    assert runs[2] == runs[1] and len(runs[2]) == 4
    assert "2 workers" in proc.stdout
    refused = run_cli(*args, "search.workers=2", "profile=cpu", f"out_dir={tmp_path / 'timed'}")
    assert refused.returncode == 2
    assert "latency would be timed while other workers train on the same machine" in refused.stderr
    assert "search.workers=2 with profile=cpu:" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "timed" / "history.jsonl").exists()


def _compile_in_worker(factory, genotype):  # noqa: ANN001, ANN202
    return factory().space.compile(genotype).source


def test_a_worker_receives_the_space_pickled_and_compiles_a_users_op(tmp_path: Path) -> None:
    arch = tmp_path / "u.arch"
    arch.write_text("model m() { input x: [4, 4, 4]\n output x -> [channel_shuffle(2) | identity] -> flatten -> "
                    "linear(10) }")
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["+search=random", f"space.arch={arch}", "evaluator=cost",
                                           "ops=[examples.custom_ops]"])
    space = evaluation_context(cfg).space
    factory = partial(evaluation_context, worker_config(cfg), space=space)
    arch.unlink()  # the worker does not read the file again: it gets the main process's space
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        source = pool.submit(_compile_in_worker, factory, (0,)).result(timeout=120)
    assert source == space.compile((0,)).source and "unflatten(1, (2, -1))" in source
