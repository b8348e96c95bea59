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
                "seconds": wall time of all its runs,
                "pool_seconds": warm starts only: the proxy's scoring time of all its runs' pools,
                "screen_seconds": with moves only: the proxy's scoring time of all its runs' screened cells,
                "screened": with moves only: distinct cells screened per run, mean,
                "scored_on_demand": with moves only: screened cells the cache lacked, scored during the runs,
                "screen_rank": with moves only: pool or children (--screen-rank)}}

Warm start (``--warmup PROXY --pool N``, as ``search.warmup.proxy=PROXY search.warmup.pool=N``): every strategy of
``--strategies`` also runs warm-started, as ``NAME+PROXY``, side by side with its cold run on the same seeds. Each
run draws its pool as the search does (``search.warmup.draw_pool`` with the run's seed), ranks it with the search's
code (``search.warmup.rank_pool``) and seeds the strategy (``Strategy.seed_with``); the pool is not counted in the
queries. The proxy scores come from the cache of ``bench/zero_cost_nb201.py`` (``--cache``; JSON lines keyed by the
cell string; missing cells are scored and appended as that bench does): each cell's network at the benchmark's size,
initialised and fed one CIFAR-10 minibatch with score seed 0 (the same scores in every run, where a search would
initialise with its own seed). A warm run's wall time adds its pool's scoring time, the per-cell seconds the cache
recorded when the cell was scored (compile, build and the proxy's computations).

    python bench/nb201.py --strategies local,evolution --references local_textbook --queries 50 \
        --budgets 25,50 --seeds 100 --warmup ensemble --pool 100 --cache ../cache/zc_nb201_all.jsonl

Zero-cost move proposal (``--moves M[,M...]``, as ``search.warmup.moves=M``): each strategy of ``--strategies`` that
mutates (``Strategy.screens``) also runs warm-started with its mutations screened, as ``NAME+PROXY+mM``: each child
is the proxy's best of M distinct untried mutations (``Strategy.screen_with``), ranked with the search's code
(``search.warmup.ranking``: the ensemble against the run's pool, as the search ranks with a pool; ``--screen-rank
children``: within the children, as it ranks without one). The screened cells' scores come from the same cache
(cells missing from it are scored on demand with the pools' settings and appended), and a run's wall time adds the
recorded seconds of every distinct cell it screened, as for the pool (``screen_seconds``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler.ir.space import Genotype  # noqa: E402
from search import nb201, warmup  # noqa: E402
from search.budget import run_search  # noqa: E402
from search.evaluators.proxy_pool import MODEL_FREE, ScoredPool, draw_pool  # noqa: E402
from search.evaluators.table import TableEvaluator  # noqa: E402
from search.proxies import PROXIES  # noqa: E402
from search.proxies.registry import COMPUTATIONS, plan  # noqa: E402
from search.strategies.base import Screen  # noqa: E402

CONF = ROOT / "conf" / "search"
SHIPPED_EXCLUDED = ("_textbook",)  # reference settings, not defaults we ship


def strategy_config(name: str):
    path = CONF / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in CONF.glob("*.yaml"))
        raise SystemExit(f"no strategy config {path}; known: {', '.join(known)}")
    return OmegaConf.load(path).search.strategy


def make_strategy(name: str, seed: int):
    # _partial_: instantiate would turn the space dataclass into config if it were passed through it.
    return instantiate(strategy_config(name), _partial_=True, _convert_="all")(space=nb201.SPACE, seed=seed,
                                                                               objectives="accuracy")


def best_so_far(name: str, evaluator: TableEvaluator, queries: int, seeds: range,
                warm: Mapping[int, Sequence[Genotype]] | None = None,
                screens: Callable[[int], Screen] | None = None, moves: int = 1) -> np.ndarray:
    """(seeds, queries) array: best accuracy among the first k distinct queries of each run; ``warm``: each seed's
    warm-start pool, ranked best first; ``screens``: each seed's screen of ``moves`` mutations."""
    curves = np.empty((len(seeds), queries))
    for row, seed in enumerate(seeds):
        strategy = make_strategy(name, seed)
        if warm is not None:
            strategy.seed_with(warm[seed])
        if screens is not None:
            strategy.screen_with(screens(seed), moves)
        history = run_search(strategy, lambda g: evaluator(g), queries, seed=seed)
        if len(history) != queries:
            raise RuntimeError(f"{name} seed {seed}: {len(history)} evaluations instead of {queries}")
        curves[row] = np.maximum.accumulate([r.metrics["accuracy"] for r in history])
    return curves


def cell_seconds(recorded: Mapping[str, float], names: Sequence[str]) -> float:
    """Seconds to score one cell with ``names``, from the times the cache recorded: compile, build (unless every
    proxy is model-free) and each computation that gives a proxy. A proxy scored as the by-product of another
    computation (naswot of the jacobian's forward pass) counts that computation's time."""
    parts = {"compile"} | ({"build"} if any(n not in MODEL_FREE for n in names) else set())
    for name in names:
        wanted = [c.name for c in plan([name])] + [c.name for c in COMPUTATIONS if name in c.gives]
        found = next((part for part in wanted if part in recorded), None)
        if found is None:
            raise SystemExit(f"the cache has {name}'s score but no time for it: score the cells again")
        parts.add(found)
    return float(sum(recorded[part] for part in parts if part in recorded))


def score_cache(cache: Path, data_root: Path | None):
    """The proxy scores of ``cache`` with the settings of bench/zero_cost_nb201.py's defaults (its ``CellCache``)."""
    from bench import zero_cost_nb201 as scores_bench

    return scores_bench.CellCache(argparse.Namespace(batch_size=32, score_seed=0, device=torch.device("cpu"),
                                                     cache=cache, data_root=data_root))


def warm_pools(proxy: str, size: int, seeds: range, cache: Path, data_root: Path | None, scores=None,  # noqa: ANN001
               ) -> tuple[dict[int, list[Genotype]], dict[int, float], dict[int, dict[str, list[float]]]]:
    """Each seed's pool ranked best first by ``proxy``, its scoring seconds (see the module docstring) and its
    scores (proxy -> one per member); ``scores``: a ``score_cache`` already read."""
    names = list(warmup.members(proxy))
    pools = {seed: draw_pool(nb201.SPACE, size, seed) for seed in seeds}
    cells = list(dict.fromkeys(nb201.genotype_to_string(g) for pool in pools.values() for g in pool))
    print(f"warm start: {len(seeds)} pools of {size} ({len(cells)} distinct cells) by {proxy}", flush=True)
    scored = (scores or score_cache(cache, data_root)).score(cells, names)
    ranked, seconds, columns = {}, {}, {}
    for seed, pool in pools.items():
        rows = [scored[nb201.genotype_to_string(g)] for g in pool]
        per_cell = [cell_seconds(row["seconds"], names) for row in rows]
        columns[seed] = {n: [row["scores"][n] for row in rows] for n in names}
        ranked[seed] = warmup.rank_pool(ScoredPool(pool, columns[seed], per_cell), proxy)
        seconds[seed] = float(sum(per_cell))
    return ranked, seconds, columns


class CachedScreen:
    """One run's screen (``Strategy.screen_with``) from the score cache: the search's ranking of the children
    (``warmup.ranking``); remembers the distinct cells it screened, whose recorded seconds the run is charged."""

    def __init__(self, proxy: str, scores, reference: Mapping[str, Sequence[float]] | None = None) -> None:  # noqa: ANN001
        self.proxy, self.scores, self.names = proxy, scores, list(warmup.members(proxy))
        self.reference = reference   # the run's pool scores: the ensemble ranks the children against them
        self.cells: set[str] = set()

    def __call__(self, children: Sequence[Genotype]) -> list[float]:
        cells = [nb201.genotype_to_string(g) for g in children]
        rows = self.scores.score(cells, self.names, quiet=True)   # missing cells: scored now, appended
        self.cells.update(cells)
        return [float(v) for v in warmup.ranking({n: [rows[c]["scores"][n] for c in cells] for n in self.names},
                                                 self.proxy, self.reference)]

    @property
    def seconds(self) -> float:
        return float(sum(cell_seconds(self.scores.cells[c]["seconds"], self.names) for c in self.cells))


def summarise(values: np.ndarray) -> dict:
    return {"mean": float(values.mean()), "std": float(values.std()), "median": float(np.median(values)),
            "n": int(values.size)}


def verdicts(results: dict, budgets: list[int]) -> list[str]:
    """The issue's goals, checked on this run's numbers."""
    lines = []

    def at(name: str, budget: int) -> dict:
        return results[name]["budgets"][str(budget)]

    shipped = [n for n in results if not n.endswith(SHIPPED_EXCLUDED) and "+" not in n]   # cold, shipped
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
    warm = [n for n in results if "+" in n]
    if warm and "local_textbook" in results and {25, 50} <= set(budgets):
        target = at("local_textbook", 50)["mean"]
        for name in warm:
            mean = at(name, 25)["mean"]
            lines.append(f"warm {name} @25 ({100 * mean:.3f}) >= local_textbook @50 in this run ({100 * target:.3f}): "
                         f"{mean >= target}; >= the issue's 94.21: {100 * mean >= 94.21}")
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
    parser.add_argument("--warmup", default=None, metavar="PROXY",
                        help="also run each of --strategies warm-started by PROXY (a proxy name or ensemble)")
    parser.add_argument("--pool", type=int, default=100, help="warm start: candidates scored per run")
    parser.add_argument("--moves", default="", metavar="M[,M...]",
                        help="warm start: also run each mutating strategy with each child the proxy's best of M "
                             "mutations")
    parser.add_argument("--screen-rank", choices=("pool", "children"), default="pool",
                        help="moves with the ensemble: rank the children against the run's pool (as the search does "
                             "with a pool) or among themselves (as it does without one)")
    parser.add_argument("--cache", type=Path, default=ROOT / "build" / "zero_cost_nb201" / "scores.jsonl",
                        help="warm start: the proxy scores (bench/zero_cost_nb201.py's cache; missing cells are "
                             "scored and appended)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="warm start: the JPEG CIFAR-10 archive, for cells not in the cache")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)  # the controller is tiny; threads only add overhead
    budgets = ([int(b) for b in args.budgets.split(",")] if args.budgets
               else sorted({max(1, args.queries // 2), args.queries}))
    if max(budgets) > args.queries:
        raise SystemExit(f"budgets {budgets} exceed --queries {args.queries}")
    strategies = [n for n in args.strategies.split(",") if n]
    names = strategies + [n for n in args.references.split(",") if n and n not in strategies]
    evaluator = TableEvaluator(args.table)
    seeds = range(args.seed_offset, args.seed_offset + args.seeds)
    # (label, strategy, warm-start proxy, moves)
    runs: list[tuple[str, str, str | None, int]] = [(n, n, None, 1) for n in names]
    pools: dict[int, list[Genotype]] = {}
    pool_seconds: dict[int, float] = {}
    pool_scores: dict[int, dict[str, list[float]]] = {}
    moves = [int(m) for m in args.moves.split(",") if m.strip()]
    if moves and (not args.warmup or min(moves) < 2):
        raise SystemExit(f"--moves {args.moves}: each M at least 2, with --warmup")
    scores = None
    if args.warmup:
        if args.warmup not in (*PROXIES, "ensemble") or args.pool < 1:
            raise SystemExit(f"--warmup {args.warmup} --pool {args.pool}: a proxy of {', '.join(PROXIES)} or "
                             "ensemble, and a pool of at least 1")
        scores = score_cache(args.cache, args.data_root)
        pools, pool_seconds, pool_scores = warm_pools(args.warmup, args.pool, seeds, args.cache, args.data_root,
                                                      scores)
        runs += [(f"{n}+{args.warmup}", n, args.warmup, 1) for n in strategies]
        runs += [(f"{n}+{args.warmup}+m{m}", n, args.warmup, m) for m in moves for n in strategies
                 if make_strategy(n, 0).screens]

    print(f"table {args.table}, {args.seeds} seeds, {args.queries} distinct queries per run")
    results: dict[str, dict] = {}
    for label, name, proxy, m in runs:
        screens: list[CachedScreen] = []

        def screen(seed: int, proxy: str | None = proxy) -> CachedScreen:
            screens.append(CachedScreen(str(proxy), scores, pool_scores[seed] if args.screen_rank == "pool" else None))
            return screens[-1]
        scored_before = scores.scored_now if scores is not None else 0
        start = time.perf_counter()
        curves = best_so_far(name, evaluator, args.queries, seeds, pools if proxy else None,
                             screen if m > 1 else None, m)
        seconds = time.perf_counter() - start
        per_budget = {str(b): summarise(curves[:, b - 1]) for b in budgets}
        results[label] = {**summarise(curves[:, -1]), "queries": args.queries, "budgets": per_budget,
                          "seconds": round(seconds, 2)}
        scoring = ""
        if proxy:
            results[label]["pool_seconds"] = round(sum(pool_seconds.values()), 2)
            total = sum(pool_seconds.values())
            scoring = f" + {total:.0f} s scoring the pools, {total / len(seeds):.1f} s per run"
        if screens:
            assert scores is not None
            screened = sum(s.seconds for s in screens)
            results[label]["screen_seconds"] = round(screened, 2)
            results[label]["screened"] = float(np.mean([len(s.cells) for s in screens]))
            results[label]["scored_on_demand"] = scores.scored_now - scored_before
            results[label]["screen_rank"] = args.screen_rank
            scoring += (f" + {screened:.0f} s screening, {screened / len(seeds):.1f} s per run "
                        f"({results[label]['screened']:.1f} cells; {scores.scored_now - scored_before} scored now)")
        cells = "   ".join(f"@{b}: {100 * s['mean']:.3f} % +- {100 * s['std']:.3f} (median {100 * s['median']:.2f} %)"
                           for b, s in per_budget.items())
        print(f"{label:28s} {cells}   [{seconds:.0f} s{scoring}]", flush=True)
    for line in verdicts(results, budgets):
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
