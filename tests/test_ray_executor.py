"""search.executor=ray: the same records as the local pool (random search: the one-worker history), a worker that
dies retried once and then recorded as failed, exact resume after the driver is killed, clear configuration errors.
The tests share one local Ray instance (the executor joins a running one, as it joins a cluster)."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from functools import partial
from pathlib import Path

import pytest

from compiler.config_values import ConfigError
from compiler.space import load_space_file
from search.evaluators.table import TableEvaluator
from search.loop import SearchLoop
from search.objectives import ObjectiveSet
from search.parallel import Context
from search.ray_config import RayConfig, memory_bytes, require_ray
from search.ray_executor import init_arguments
from search.schema import search_config
from search.strategies.evolution import RegularizedEvolution
from search.strategies.random_search import RandomSearch
from search.tasks.search import evaluation_context

# the tests that run Ray skip only when it is not installed; the configuration checks run either way
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="Ray is not installed: pip install -e '.[ray]' (the dev extra includes it)")

ROOT = Path(__file__).resolve().parents[1]
SPACE = str(ROOT / "examples" / "spaces" / "nb201.arch")
TABLE = ROOT.parent / "shared" / "data" / "nb201-cifar10.csv"
OBJECTIVES = ObjectiveSet.coerce("accuracy")


class SlowTable(TableEvaluator):
    """The NAS-Bench-201 lookup, taking ``delay`` x (0..4) s by genotype (later proposals often finish first); it
    kills its own process on the genotypes in ``die`` (every time) and ``die_once`` (the first time: a marker file
    in ``notes`` remembers it), and notes each death there."""

    def __init__(self, delay: float = 0.01, die: tuple = (), die_once: tuple = (), notes: str = "") -> None:
        super().__init__(TABLE)
        self.delay, self.die, self.die_once, self.notes = delay, die, die_once, notes

    def __call__(self, genotype, space):  # noqa: ANN001, ANN204
        name = "-".join(map(str, genotype))
        if tuple(genotype) in self.die or (tuple(genotype) in self.die_once
                                           and not (Path(self.notes) / f"{name}.died").exists()):
            with (Path(self.notes) / f"{name}.died").open("a") as f:
                f.write(f"{os.getpid()}\n")
            os._exit(9)  # as the kernel's OOM killer would end it: no exception, no cleanup
        time.sleep(self.delay * (sum(genotype) % 5))
        return {**super().__call__(genotype, space), "pid": os.getpid()}


def table_context(**options: object) -> Context:
    return Context(load_space_file(SPACE), SlowTable(**options), OBJECTIVES)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance for the module; its workers import this module's helpers (tests/ on their path)."""
    import ray

    saved = {name: os.environ.get(name) for name in ("PYTHONPATH", "RAY_USAGE_STATS_ENABLED")}
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests"),
                                                *([saved["PYTHONPATH"]] if saved["PYTHONPATH"] else [])])
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # tests reach no network: Ray reports usage unless told not to
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    yield
    ray.shutdown()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _loop(out: Path, executor: str, workers: int, strategy: type = RandomSearch, budget: int = 12,
          **options: object) -> SearchLoop:
    context = table_context(**options)
    return SearchLoop(context.space, strategy(context.space, seed=5, objectives=OBJECTIVES), context.evaluator,
                      OBJECTIVES, budget, out, seed=5, progress=False, workers=workers,
                      worker_context=partial(table_context, **options), executor=executor)


def _essence(records: list[dict]) -> list[tuple]:
    return [(tuple(r["genotype"]), r["metrics"].get("accuracy"), r["status"], r["arch"]) for r in records]


@needs_ray
@pytest.mark.usefixtures("ray_instance")
def test_random_search_on_ray_records_what_one_local_worker_records(tmp_path: Path) -> None:
    one = _loop(tmp_path / "one", "local", 1).run()
    on_ray = _loop(tmp_path / "ray", "ray", 2).run()
    assert _essence(on_ray) == _essence(one) and len(on_ray) == 12
    pids = {r["metrics"]["pid"] for r in on_ray}
    assert os.getpid() not in pids and len(pids) == 2  # both actors worked, none of it in the driver


@needs_ray
@pytest.mark.usefixtures("ray_instance")
def test_a_short_training_on_digits_gives_the_same_history_on_ray(tmp_path: Path) -> None:
    config = {"ops": [], "objective": "accuracy", "profile": None,
              "space": {"arch": str(ROOT / "examples" / "spaces" / "digits.arch"), "params": {}},
              "evaluator": {"_target_": "search.evaluators.train.TrainEvaluator", "_recursive_": False, "seed": 0,
                            "dataset": {"_target_": "search.data.digits.load_digits_splits"},
                            "trainer": {"cpu_threads": 1, "progress": False},
                            "search_overrides": {"budget": {"epochs": 1}, "batch_size": 64}}}
    runs = {}
    for executor, workers in (("local", 1), ("ray", 2)):
        context = evaluation_context(config)
        loop = SearchLoop(context.space, RandomSearch(context.space, seed=1, objectives=context.objectives),
                          context.evaluator, context.objectives, 4, tmp_path / executor, seed=1, progress=False,
                          workers=workers, worker_context=partial(evaluation_context, config), executor=executor)
        runs[executor] = [(r["genotype"], r["status"], r["metrics"]["accuracy"], r["metrics"]["val_curve"])
                          for r in loop.run()]
    assert runs["ray"] == runs["local"] and all(status == "ok" for _, status, _, _ in runs["ray"])


@needs_ray
@pytest.mark.usefixtures("ray_instance")
def test_a_worker_killed_mid_candidate_is_retried_once_then_the_candidate_is_recorded_as_failed(
        tmp_path: Path) -> None:
    reference = _loop(tmp_path / "ref", "local", 1, budget=6).run()
    once, always = tuple(reference[1]["genotype"]), tuple(reference[3]["genotype"])
    notes = tmp_path / "notes"
    notes.mkdir()
    records = _loop(tmp_path / "ray", "ray", 2, budget=6, die=(always,), die_once=(once,), notes=str(notes)).run()
    deaths = {f.name: len(f.read_text().split()) for f in notes.iterdir()}
    assert deaths == {"-".join(map(str, once)) + ".died": 1, "-".join(map(str, always)) + ".died": 2}
    failed = records[3]
    assert failed["status"] == "error" and failed["genotype"] == list(always)
    assert "the worker process died while evaluating it, and again when it was retried" in failed["metrics"]["error"]
    import ray

    reason = re.search(r"retried \((\w+): ", failed["metrics"]["error"])  # Ray's exception, by name
    assert reason and issubclass(getattr(ray.exceptions, reason[1]), ray.exceptions.RayActorError), failed["metrics"]
    # every other candidate (the one retried too) is what the local run recorded, and the search went on after it
    assert [e for i, e in enumerate(_essence(records)) if i != 3] == [e for i, e in enumerate(_essence(reference))
                                                                      if i != 3]


DRIVER = textwrap.dedent("""
    import sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from test_ray_executor import _loop
    from search.strategies.evolution import RegularizedEvolution
    _loop(Path({out!r}), "ray", 2, RegularizedEvolution, budget=14, delay=0.15).run()
    """)


@needs_ray
@pytest.mark.usefixtures("ray_instance")
@pytest.mark.slow
def test_a_killed_driver_resumes_to_the_uninterrupted_history(tmp_path: Path) -> None:
    reference = _loop(tmp_path / "ref", "local", 2, RegularizedEvolution, budget=14, delay=0.15).run()
    out = tmp_path / "run"
    script = DRIVER.format(tests=str(ROOT / "tests"), out=str(out))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    # its own process group: Ray's helper processes that outlive a SIGKILLed driver are ended with it below
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    history = out / "history.jsonl"
    try:
        deadline = time.time() + 240
        while not history.exists() or len(history.read_text().splitlines()) < 5:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.time() < deadline, "the driver did not get going"
            time.sleep(0.05)
        in_flight = json.loads((out / "checkpoint.json").read_text())["in_flight"]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert len(history.read_text().splitlines()) < 14 and in_flight  # killed mid-run, candidates in flight
    resumed = _loop(out, "ray", 2, RegularizedEvolution, budget=14, delay=0.15).run()
    assert _essence(resumed) == _essence(reference)


def test_search_config_checks_the_ray_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    strategy = {"_target_": "search.strategies.random_search.RandomSearch"}
    cfg = search_config({"strategy": strategy, "executor": "ray", "workers": 2,
                         "ray": {"num_cpus": 2, "num_gpus": 1, "memory": "4GB", "address": "auto"}})
    assert (cfg.ray.num_cpus, cfg.ray.num_gpus, memory_bytes(cfg.ray.memory)) == (2, 1, 4 * 10**9)
    assert search_config({"strategy": strategy}).executor == "local"
    with pytest.raises(ConfigError, match=r"search.executor: error: unknown executor 'dask'"):
        search_config({"strategy": strategy, "executor": "dask"})
    with pytest.raises(ConfigError, match=r"search.ray.num_cpu: error: unknown key"):
        search_config({"strategy": strategy, "executor": "ray", "ray": {"num_cpu": 1}})
    with pytest.raises(ConfigError, match=r"search.ray.memory: error: not a memory size: '4 parsecs'"):
        search_config({"strategy": strategy, "executor": "ray", "ray": {"memory": "4 parsecs"}})
    assert memory_bytes("512MiB") == 512 * 2**20 and memory_bytes(1000) == 1000
    for huge in ("inf", "1e400GB", float("inf")):   # OverflowError before
        with pytest.raises(ConfigError, match=r"search.ray.memory: error: .* is more memory than any machine has"):
            memory_bytes(huge)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(ConfigError) as missing:
        require_ray()
    assert str(missing.value).startswith("search.executor: error: search.executor=ray needs Ray, which is not "
                                         "installed")
    assert "pip install -e '.[ray]'" in str(missing.value)


def test_ray_starts_a_local_instance_big_enough_or_joins_the_address() -> None:
    local = init_arguments(RayConfig(num_cpus=1), workers=64)
    assert local["num_cpus"] == 64 and "address" not in local
    joined = init_arguments(RayConfig(address="auto", runtime_env={"env_vars": {"A": "1"}}), workers=2)
    assert joined["address"] == "auto" and joined["runtime_env"] == {"env_vars": {"A": "1"}}
    assert "num_cpus" not in joined  # a cluster has its own resources
