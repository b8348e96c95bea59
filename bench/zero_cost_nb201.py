"""Zero-cost proxies against NAS-Bench-201: rank correlation of each proxy (and the ensembles) with the table.

    python bench/zero_cost_nb201.py --n 1000 --seed 0 --out bench/results/zero_cost_nb201.json
    python bench/zero_cost_nb201.py --all                       # all 15,625 cells
    python bench/zero_cost_nb201.py --n 300 --seed 1 --ensemble synflow,naswot --ensemble synflow=2,zico=1

A seeded sample of the table's cells (``--seed`` picks the sample) is built by the compiler from
``examples/spaces/nb201.arch`` at the benchmark's size (16 channels, 5 cells per stage, 32x32, 10 classes), each
network initialised from ``--score-seed`` and its cell (so a cell's network is the same in every run and sample),
and scored on one minibatch of the JPEG CIFAR-10 training split (``dataset=cifar10_jpeg``, drawn with
``--score-seed``). Printed and written: each proxy's and each ensemble's Spearman and Kendall (tau-b) correlation
with the table's accuracy, how many cells scored -inf (output independent of the input), and the time per cell:
compile, build (exec of the generated source and weight init) and each proxy family, separately.

Scores go to a cache (``--cache``, JSON lines: one line per cell and settings, ``null`` for -inf), so a run can be
stopped and resumed, or extended with more cells or proxies; cached cells keep the times measured when they were
scored. Timings on a shared machine are pessimistic: say so when quoting them.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._util import machine  # noqa: E402
from compiler.space import Space, load_space_file  # noqa: E402
from search import nb201  # noqa: E402
from search.evaluators.table import load_table  # noqa: E402
from search.evaluators.train import candidate_seed  # noqa: E402
from search.proxies import PROXIES, RankEnsemble, check_names, kendall, measure_proxies, spearman  # noqa: E402
from search.proxies.registry import plan  # noqa: E402
from search.proxies.ensemble import DEFAULT_ENSEMBLE  # noqa: E402

SHARED = Path(os.environ.get("AUTOML_SHARED_DATA", ROOT.parent / "shared" / "data"))
SPACE_FILE = ROOT / "examples" / "spaces" / "nb201.arch"
BENCHMARK_SIZE = {"num_classes": 10, "channels": 16, "cells": 5, "size": 32}
PAPER_VOTE = ("synflow", "jacob_cov", "snip")   # Abdelfattah et al.'s vote: Spearman 0.82 on this table
CACHE_VERSION = 2                               # bump when a proxy's definition changes


# ---- the sample, the networks, the minibatch -------------------------------------------------------------------
def sample_cells(n: int | None, seed: int) -> list[str]:
    """``n`` distinct benchmark strings in a seeded random order (all of them when ``n`` is None)."""
    total = nb201.SPACE.size
    order = np.random.default_rng(seed).permutation(total)[: total if n is None else n]
    return [nb201.genotype_to_string(nb201.SPACE.genotype_at(int(i))) for i in order]


def space_genotype(space: Space, arch: str) -> tuple[int, ...]:
    """The compiler space's genotype of a benchmark string, matched by option label (not by position)."""
    if not nb201.option_labels_match(space):
        raise SystemExit(f"{SPACE_FILE} no longer has the NAS-Bench-201 edges as its decisions")
    ops = [nb201.OPS[v] for v in nb201.string_to_genotype(arch)]
    return tuple(d.options.index(op) for d, op in zip(space.decisions, ops))


def minibatch(batch_size: int, seed: int, device: torch.device, data_root: Path | None) -> tuple[torch.Tensor, ...]:
    """One normalised, unaugmented minibatch of the JPEG CIFAR-10 training split, through the project's loader."""
    from hydra import compose, initialize_config_dir

    from search.data import DeviceLoader, load_dataset

    overrides = ["dataset=cifar10_jpeg"] + ([f"dataset.root={data_root}"] if data_root else [])
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        config = compose("config", overrides=overrides).dataset
    data = load_dataset(config)
    loader = DeviceLoader(data.train, batch_size, device, data.mean, data.std, shuffle=True, seed=seed)
    return next(iter(loader))


# ---- the cache --------------------------------------------------------------------------------------------------
def settings_key(args: argparse.Namespace) -> str:
    return json.dumps({"batch_size": args.batch_size, "score_seed": args.score_seed, "device": args.device.type,
                       "version": CACHE_VERSION}, sort_keys=True)


def _encode(scores: dict[str, float]) -> dict[str, float | None]:
    return {k: (v if math.isfinite(v) else None) for k, v in scores.items()}


def _decode(scores: dict[str, float | None]) -> dict[str, float]:
    return {k: (-math.inf if v is None else float(v)) for k, v in scores.items()}


def read_cache(path: Path, key: str) -> dict[str, dict[str, Any]]:
    """arch -> {"scores", "seconds", "cpu_seconds"} merged over the cache's lines with these settings."""
    cells: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return cells
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue   # a line cut short by a kill: that cell is scored again
        if record.get("key") != key:
            continue
        cell = cells.setdefault(record["arch"], {"scores": {}, "seconds": {}, "cpu_seconds": {}})
        cell["scores"].update(_decode(record["scores"]))
        cell["seconds"].update(record["seconds"])
        cell["cpu_seconds"].update(record.get("cpu_seconds", {}))
    return cells


# ---- scoring ----------------------------------------------------------------------------------------------------
def score_cell(space: Space, arch: str, names: list[str], batch: tuple[torch.Tensor, ...],
               score_seed: int) -> dict[str, Any]:
    genotype = space_genotype(space, arch)
    start = time.perf_counter()
    compiled = space.compile(genotype)
    compiled_at = time.perf_counter()
    torch.manual_seed(candidate_seed(score_seed, nb201.string_to_genotype(arch)))
    model = compiled.build()
    built_at = time.perf_counter()
    result = measure_proxies(names, model=model, inputs=batch[0], targets=batch[1], summary=compiled.summary,
                             seed=score_seed)
    seconds = {"compile": compiled_at - start, "build": built_at - compiled_at, **result.seconds}
    return {"scores": result.scores, "seconds": seconds, "cpu_seconds": result.cpu_seconds}


class CellCache:
    """The cache's cells with the settings of ``args``, read once; ``score`` scores what is missing and appends it
    (the space and the minibatch are built on the first cell that needs them)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.key = settings_key(args)
        self.cells = read_cache(args.cache, self.key)
        self._space: Space | None = None
        self._batch: tuple[torch.Tensor, ...] | None = None
        self.scored_now = 0

    def missing(self, cells: list[str], names: list[str]) -> list[str]:
        return [a for a in cells if not set(names) <= set(self.cells.get(a, {}).get("scores", {}))]

    def score(self, cells: list[str], names: list[str], quiet: bool = False) -> dict[str, dict[str, Any]]:
        """arch -> {"scores", "seconds", "cpu_seconds"} of ``cells``, each with ``names`` (scored now if missing)."""
        args = self.args
        todo = self.missing(cells, names)
        if not quiet:
            print(f"{len(cells) - len(todo)} of {len(cells)} cells cached in {args.cache}; scoring {len(todo)}",
                  flush=True)
        if todo and self._space is None:
            self._space = load_space_file(str(SPACE_FILE), **BENCHMARK_SIZE)
            self._batch = minibatch(args.batch_size, args.score_seed, args.device, args.data_root)
        if todo:
            assert self._space is not None and self._batch is not None
            args.cache.parent.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            with args.cache.open("a") as out:
                for i, arch in enumerate(todo, 1):
                    have = self.cells.get(arch, {}).get("scores", {})
                    scored = score_cell(self._space, arch, [n for n in names if n not in have], self._batch,
                                        args.score_seed)
                    out.write(json.dumps({"arch": arch, "key": self.key, "scores": _encode(scored["scores"]),
                                          "seconds": scored["seconds"], "cpu_seconds": scored["cpu_seconds"]}) + "\n")
                    out.flush()
                    cell = self.cells.setdefault(arch, {"scores": {}, "seconds": {}, "cpu_seconds": {}})
                    for part in ("scores", "seconds", "cpu_seconds"):
                        cell[part].update(scored[part])
                    self.scored_now += 1
                    if not quiet and (i % 50 == 0 or i == len(todo)):
                        rate = (time.perf_counter() - start) / i
                        print(f"  {i}/{len(todo)} cells, {rate:.2f} s per cell", flush=True)
        return {a: self.cells[a] for a in cells}


def score_all(cells: list[str], names: list[str], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    return CellCache(args).score(cells, names)


# ---- report -----------------------------------------------------------------------------------------------------
def parse_ensemble(text: str) -> RankEnsemble:
    """``a,b,c`` (equal weights) or ``a=2,b=1``."""
    weights = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, _, weight = part.partition("=")
        weights[name] = float(weight) if weight else 1.0
    return RankEnsemble(weights)


def ensemble_label(ensemble: RankEnsemble) -> str:
    weights = set(ensemble.weights.values())
    if len(weights) == 1:
        return "rank(" + "+".join(ensemble.members) + ")"
    return "rank(" + "+".join(f"{w:g}*{m}" for m, w in ensemble.weights.items()) + ")"


def time_summary(values: Iterable[float]) -> dict[str, float]:
    v = sorted(values)
    return {"mean": statistics.fmean(v), "median": statistics.median(v), "p90": v[int(0.9 * (len(v) - 1))],
            "max": v[-1]}


def report(cells: list[str], scored: dict[str, dict[str, Any]], names: list[str], ensembles: list[RankEnsemble],
           accuracy: np.ndarray) -> dict[str, Any]:
    columns = {n: np.array([scored[a]["scores"][n] for a in cells]) for n in names}
    rows: dict[str, dict[str, Any]] = {}
    for name, values in columns.items():
        rows[name] = {"spearman": spearman(values, accuracy), "kendall": kendall(values, accuracy),
                      "worst": int(np.isneginf(values).sum())}
    for ensemble in ensembles:
        if set(ensemble.members) <= set(names):
            values = ensemble.rank_scores(columns)
            rows[ensemble_label(ensemble)] = {"spearman": spearman(values, accuracy),
                                              "kendall": kendall(values, accuracy), "members": ensemble.members,
                                              "weights": dict(ensemble.weights)}
    times: dict[str, Any] = {}
    for clock in ("seconds", "cpu_seconds"):
        times[clock] = {}
        parts = {p: [p] for p in (["compile", "build"] if clock == "seconds" else [])}
        parts.update({c.name: [c.name] for c in plan(names)})
        parts.update({ensemble_label(e): [c.name for c in plan(e.members)] for e in ensembles
                      if set(e.members) <= set(names)})
        for label, needed in parts.items():
            # cells scored in several runs may lack a part's time (e.g. naswot alone when it came with jacob_cov)
            values = [sum(scored[a][clock][p] for p in needed) for a in cells
                      if all(p in scored[a][clock] for p in needed)]
            if values:
                times[clock][label] = {**time_summary(values), "cells": len(values)}
    return {"correlations": rows, "seconds_per_cell": times}


def print_report(result: dict[str, Any]) -> None:
    print(f"\n{'proxy':40s} {'Spearman':>9s} {'Kendall':>8s} {'-inf':>5s}")
    for name, row in result["correlations"].items():
        print(f"{name:40s} {row['spearman']:9.4f} {row['kendall']:8.4f} {row.get('worst', ''):>5}")
    for clock, title in (("seconds", "wall seconds per cell"), ("cpu_seconds", "CPU seconds per cell (scoring)")):
        print(f"\n{title:40s} {'mean':>8s} {'median':>8s} {'p90':>8s} {'max':>8s}")
        for part, t in result["seconds_per_cell"][clock].items():
            print(f"{part:40s} {t['mean']:8.4f} {t['median']:8.4f} {t['p90']:8.4f} {t['max']:8.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="cells in the sample")
    parser.add_argument("--all", action="store_true", help="all 15,625 cells")
    parser.add_argument("--seed", type=int, default=0, help="picks the sample")
    parser.add_argument("--score-seed", type=int, default=0, help="weight init and minibatch (the same for every "
                                                                  "sample, so samples share the cache)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--proxies", default=",".join(PROXIES))
    parser.add_argument("--ensemble", action="append", default=[],
                        help="an extra rank ensemble to report, e.g. synflow,naswot or synflow=2,zico=1 "
                             "(repeatable; the shipped one and the paper's vote are always reported)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--table", type=Path, default=SHARED / "nb201-cifar10.csv")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="the JPEG CIFAR-10 archive (default: the dataset config's, ../shared/data)")
    parser.add_argument("--cache", type=Path, default=ROOT / "build" / "zero_cost_nb201" / "scores.jsonl")
    parser.add_argument("--out", type=Path, default=None, help="results JSON (with every cell's scores)")
    args = parser.parse_args(argv)

    args.device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    if args.batch_size < 2:
        raise SystemExit("--batch-size: the data proxies need at least 2 images")
    try:
        names = check_names([n.strip() for n in args.proxies.split(",") if n.strip()])
        ensembles = [DEFAULT_ENSEMBLE, RankEnsemble.equal(PAPER_VOTE), *map(parse_ensemble, args.ensemble)]
    except ValueError as err:
        raise SystemExit(f"--proxies/--ensemble: {err}") from err
    accuracy_of = load_table(str(args.table))["accuracy"]
    cells = sample_cells(None if args.all else args.n, args.seed)
    accuracy = np.array([accuracy_of[nb201.SPACE.index_of(nb201.string_to_genotype(a))] for a in cells])
    print(f"{len(cells)} NAS-Bench-201 cells (sample seed {args.seed}), batch {args.batch_size}, score seed "
          f"{args.score_seed}, {args.device}; {machine()}", flush=True)

    scored = score_all(cells, names, args)
    result = report(cells, scored, names, ensembles, accuracy)
    print_report(result)
    if args.out:
        summary = {"n": len(cells), "seed": args.seed, "score_seed": args.score_seed, "batch_size": args.batch_size,
                   "device": str(args.device), "threads": args.threads, "machine": machine(), **result}
        rows = (json.dumps({"arch": a, "accuracy": float(acc), "scores": _encode(scored[a]["scores"])})
                for a, acc in zip(cells, accuracy))
        args.out.parent.mkdir(parents=True, exist_ok=True)   # one line per cell, so the file stays readable
        args.out.write_text(json.dumps(summary, indent=1)[:-2] + ',\n "cells": [\n' + ",\n".join(rows) + "\n ]\n}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
