"""Local pool against Ray: a 16-candidate random search on digits with the local executor (1 and 2 workers) and Ray
(2 workers) in one process, and Ray's overhead per candidate.

    python bench/parallel_scaling.py                      # budget 16, 8 epochs per candidate (the default evaluator)
    python bench/parallel_scaling.py --budget 32 --epochs 4 --json out.json

Each configuration runs the search loop itself (search/loop.py) with the train evaluator on digits, so all three
record the same 16 candidates (random search does not depend on the number of workers; checked). Printed:
* each configuration's wall time (workers' start-up included, the Ray instance's start excluded: printed apart) and
  its speed-up over one local worker;
* Ray's round trip for one candidate's call with nothing to do (the candidate's arguments and a result of the same
  shape travel, median of ``--calls``), and the slot time per candidate that Ray adds over the local pool,
  ((wall_ray - wall_local) x workers / budget), each as a share of a 10-second candidate (the goal: under 5 %).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CANDIDATE_S = 10.0  # the candidate length the overhead goal is stated for


def digits_config(epochs: float) -> dict[str, Any]:
    return {"ops": [], "objective": "accuracy", "profile": None,
            "space": {"arch": str(ROOT / "examples" / "spaces" / "digits.arch"), "params": {}},
            "evaluator": {"_target_": "search.evaluators.train.TrainEvaluator", "_recursive_": False, "seed": 0,
                          "dataset": {"_target_": "search.data.digits.load_digits_splits"},
                          "trainer": {"cpu_threads": 1, "progress": False},
                          "search_overrides": {"budget": {"epochs": epochs}, "batch_size": 64}}}


def run_search(config: dict[str, Any], executor: str, workers: int, budget: int, out: Path) -> dict[str, Any]:
    from search.loop import SearchLoop
    from search.strategies.random_search import RandomSearch
    from search.tasks.search import evaluation_context

    context = evaluation_context(config)
    loop = SearchLoop(context.space, RandomSearch(context.space, seed=0, objectives=context.objectives),
                      context.evaluator, context.objectives, budget, out, seed=0, progress=False, workers=workers,
                      worker_context=partial(evaluation_context, config), executor=executor)
    start = time.perf_counter()
    records = loop.run()
    wall = time.perf_counter() - start
    return {"executor": executor, "workers": workers, "wall_s": wall,
            "candidate_s": sum(r["seconds"] for r in records),
            "history": [(r["genotype"], r["metrics"].get("accuracy")) for r in records]}


def echo(genotype: Any, observed: Any) -> Any:
    """A candidate's call with nothing to do: the arguments go to the worker, a result of the same shape comes back."""
    from search.parallel import Outcome
    return Outcome({"status": "ok", "accuracy": 0.5, "val_curve": [0.5] * 8}, "model m {}" * 20, 0.0)


def ray_round_trip(config: dict[str, Any], calls: int, budget: int) -> list[float]:
    from search.parallel import worker_lost
    from search.ray_config import RayConfig
    from search.ray_executor import RayExecutor
    from search.tasks.search import evaluation_context

    executor = RayExecutor(1, partial(evaluation_context, config), RayConfig(), lost=worker_lost)
    observed = [{"accuracy": 0.5, "val_curve": [0.5] * 8}] * budget
    times = []
    try:
        for i in range(calls):
            start = time.perf_counter()
            executor.submit(echo, (i % 3, 1, 0, 2, 1, 0, 1), observed).result()
            times.append(time.perf_counter() - start)
    finally:
        executor.shutdown()
    return times


def main(argv: list[str] | None = None) -> int:
    import ray

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=int, default=16)
    parser.add_argument("--epochs", type=float, default=8)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    config = digits_config(args.epochs)
    print(f"random search on digits, {args.budget} candidates, {args.epochs:g} epochs each; {os.cpu_count()} cpus",
          flush=True)
    start = time.perf_counter()
    ray.init(num_cpus=max(2, os.cpu_count() or 1), include_dashboard=False, configure_logging=False)
    ray_start = time.perf_counter() - start
    print(f"ray instance started in {ray_start:.1f} s (not counted below)", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for executor, workers in (("local", 1), ("local", 2), ("ray", 2)):
            row = run_search(config, executor, workers, args.budget, Path(tmp) / f"{executor}{workers}")
            rows.append(row)
            print(f"{executor} x{workers}: {row['wall_s']:.1f} s wall, {row['candidate_s']:.1f} s of candidate time",
                  flush=True)
    same = all(r["history"] == rows[0]["history"] for r in rows)
    trips = ray_round_trip(config, args.calls, args.budget)
    ray.shutdown()
    base = rows[0]["wall_s"]
    for row in rows:
        print(f"{row['executor']} x{row['workers']}: speed-up over local x1 {base / row['wall_s']:.2f}x")
    trip = statistics.median(trips)
    local2, ray2 = rows[1], rows[2]
    added = (ray2["wall_s"] - local2["wall_s"]) * ray2["workers"] / args.budget
    print(f"same history in all three: {same}")
    print(f"ray round trip per candidate: median {1000 * trip:.1f} ms [{1000 * min(trips):.1f}-"
          f"{1000 * max(trips):.1f}] over {len(trips)} calls = {100 * trip / CANDIDATE_S:.2f} % of a "
          f"{CANDIDATE_S:g}-second candidate")
    print(f"slot time ray x2 adds over local x2: {added:+.2f} s per candidate = {100 * added / CANDIDATE_S:+.1f} % "
          f"of a {CANDIDATE_S:g}-second candidate (actor start-up included)")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "ray_start_s": ray_start, "same_history": same,
                                               "round_trip_s": trips, "rows": [{k: v for k, v in r.items()
                                                                                if k != "history"} for r in rows]},
                                              indent=1) + "\n")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
