"""Search strategies on the NAS-Bench-201 table: best accuracy found after N distinct queries.

    python bench/nb201.py --table ../shared/data/nb201-cifar10.csv \
        --strategies random,evolution,rl,local --queries 100 --seeds 100 --json OUT.json

Each strategy is built from its shipped config, ``conf/search/NAME.yaml`` (so ``evolution`` is the default
configuration and ``evolution_textbook`` / ``local_textbook`` are the textbook settings), and run once per seed
0..seeds-1 with the ``table`` evaluator through ``BudgetedSearch``: the budget counts distinct architectures,
re-proposals are answered from the cache for free. The references named by ``--references`` (default: random and
the textbook settings) are run side by side unless already listed.

Printed and written per strategy: mean +- std (population std, ddof=0) and median of the best accuracy found
within each budget of ``--budgets`` (default: half the queries and all of them). Accuracies are printed in percent
and stored in the JSON as fractions in [0, 1] (the table evaluator's unit; files written before that change, such
as bench/results/nb201_*seeds.json, hold percent). JSON layout:

    {strategy: {"mean": .., "std": .., "median": .., "n": seeds, "queries": Q,     # at the full budget Q
                "budgets": {"50": {"mean", "std", "median", "n"}, "100": {...}},
                "seconds": wall time of all its runs}}
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from search import nb201  # noqa: E402
from search.budget import run_search  # noqa: E402
from search.evaluators.table import TableEvaluator  # noqa: E402

CONF = ROOT / "conf" / "search"
SHIPPED_EXCLUDED = ("_textbook",)  # reference settings, not defaults we ship


def strategy_config(name: str):
    path = CONF / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in CONF.glob("*.yaml"))
        raise SystemExit(f"no strategy config {path}; known: {', '.join(known)}")
    return OmegaConf.load(path).search.strategy


def best_so_far(name: str, evaluator: TableEvaluator, queries: int, seeds: range) -> np.ndarray:
    """(seeds, queries) array: best accuracy among the first k distinct queries of each run."""
    # _partial_: instantiate would turn the space dataclass into config if it were passed through it.
    make = instantiate(strategy_config(name), _partial_=True, _convert_="all")
    curves = np.empty((len(seeds), queries))
    for row, seed in enumerate(seeds):
        strategy = make(space=nb201.SPACE, seed=seed, objectives="accuracy")
        history = run_search(strategy, lambda g: evaluator(g), queries, seed=seed)
        if len(history) != queries:
            raise RuntimeError(f"{name} seed {seed}: {len(history)} evaluations instead of {queries}")
        curves[row] = np.maximum.accumulate([r.metrics["accuracy"] for r in history])
    return curves


def summarise(values: np.ndarray) -> dict:
    return {"mean": float(values.mean()), "std": float(values.std()), "median": float(np.median(values)),
            "n": int(values.size)}


def verdicts(results: dict, budgets: list[int]) -> list[str]:
    """The issue's goals, checked on this run's numbers."""
    lines = []

    def at(name: str, budget: int) -> dict:
        return results[name]["budgets"][str(budget)]

    shipped = [n for n in results if not n.endswith(SHIPPED_EXCLUDED)]
    for budget in budgets:
        if "evolution" in results and "evolution_textbook" in results:
            ok = at("evolution", budget)["mean"] > at("evolution_textbook", budget)["mean"]
            lines.append(f"@{budget}: evolution beats evolution_textbook: {ok}")
        if "local_textbook" in results and shipped:
            best = max(shipped, key=lambda n: at(n, budget)["mean"])
            ref = at("local_textbook", budget)
            ok = at(best, budget)["mean"] > ref["mean"] and at(best, budget)["std"] <= ref["std"]
            lines.append(f"@{budget}: best shipped ({best}) beats local_textbook (mean higher, std no wider): {ok}")
        if "random" in results:
            below = [n for n in shipped if at(n, budget)["mean"] < at("random", budget)["mean"]]
            lines.append(f"@{budget}: shipped strategies below random: {below or 'none'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default=str(ROOT.parent / "shared" / "data" / "nb201-cifar10.csv"))
    parser.add_argument("--strategies", default="random,evolution,rl,local")
    parser.add_argument("--references", default="random,evolution_textbook,local_textbook",
                        help="run side by side too (empty: none)")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--budgets", default=None, help="comma-separated; default: queries/2 and queries")
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--seed-offset", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    torch.set_num_threads(1)  # the controller is tiny; threads only add overhead
    budgets = ([int(b) for b in args.budgets.split(",")] if args.budgets
               else sorted({max(1, args.queries // 2), args.queries}))
    if max(budgets) > args.queries:
        raise SystemExit(f"budgets {budgets} exceed --queries {args.queries}")
    names = [n for n in args.strategies.split(",") if n]
    names += [n for n in args.references.split(",") if n and n not in names]
    evaluator = TableEvaluator(args.table)
    seeds = range(args.seed_offset, args.seed_offset + args.seeds)

    print(f"table {args.table}, {args.seeds} seeds, {args.queries} distinct queries per run")
    results: dict[str, dict] = {}
    for name in names:
        start = time.perf_counter()
        curves = best_so_far(name, evaluator, args.queries, seeds)
        seconds = time.perf_counter() - start
        per_budget = {str(b): summarise(curves[:, b - 1]) for b in budgets}
        results[name] = {**summarise(curves[:, -1]), "queries": args.queries, "budgets": per_budget,
                         "seconds": round(seconds, 2)}
        cells = "   ".join(f"@{b}: {100 * s['mean']:.3f} % +- {100 * s['std']:.3f} (median {100 * s['median']:.2f} %)"
                           for b, s in per_budget.items())
        print(f"{name:20s} {cells}   [{seconds:.0f} s]", flush=True)
    for line in verdicts(results, budgets):
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
