"""Parallel evaluation: the main job's wall time with search.workers=1 and =N, side by side (alternating).

    python bench/parallel_search.py                         # evolution on digits, seeds 0-2, workers 1 and 2
    python bench/parallel_search.py --workers 1,2 --seeds 0,1,2,3 --search random --json out.json

Each run is the real CLI (`python -m compiler +search=NAME seed=S search.workers=W`) in a fresh output folder; the
figure is the command's wall time, final training and the workers' start-up included (what a user waits for), and
the sum of per-candidate seconds (each measured where it ran). Also printed: the best validation accuracy and final test
accuracy each run reached, since with N > 1 the asks and tells interleave differently (random search excepted).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from _util import run_compiler


def one_run(search: str, seed: int, workers: int, extra: list[str], out: Path) -> dict[str, Any]:
    command = [f"+search={search}", f"seed={seed}", f"search.workers={workers}",
               "search.progress=false", f"out_dir={out}", *extra]
    wall = run_compiler(command)
    records = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    final_metrics = out / "best" / "metrics.json"
    best = max((r["metrics"].get("accuracy") or 0.0) for r in records)
    final = json.loads(final_metrics.read_text()).get("test_acc") if final_metrics.exists() else None
    return {"search": search, "seed": seed, "workers": workers, "wall_s": wall, "evaluations": len(records),
            "candidate_seconds": sum(r["seconds"] for r in records), "best_val_acc": best, "final_test_acc": final}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--search", default="evolution")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--json", default=None)
    parser.add_argument("extra", nargs="*", help="more overrides, e.g. search.budget=40")
    args = parser.parse_args(argv)
    counts = [int(w) for w in args.workers.split(",")]
    rows = []
    print(f"{args.search} on {os.cpu_count()} cpus; overrides {args.extra or 'none'}")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in [int(s) for s in args.seeds.split(",")]:
            order = counts if seed % 2 == 0 else counts[::-1]  # alternate, so drift hits every count alike
            for workers in order:
                row = one_run(args.search, seed, workers, args.extra, Path(tmp) / f"s{seed}w{workers}")
                rows.append(row)
                print(f"seed {seed} workers {workers}: {row['wall_s']:.1f} s wall, {row['evaluations']} evaluations "
                      f"({row['candidate_seconds']:.1f} s of candidate time), best val {row['best_val_acc']:.4f}, "
                      f"final test {row['final_test_acc']}", flush=True)
    base = {r["seed"]: r["wall_s"] for r in rows if r["workers"] == counts[0]}
    for workers in counts:
        walls = [r["wall_s"] for r in rows if r["workers"] == workers]
        speedups = [base[r["seed"]] / r["wall_s"] for r in rows if r["workers"] == workers]
        print(f"workers {workers}: wall median {statistics.median(walls):.1f} s [{min(walls):.1f}-{max(walls):.1f}]; "
              f"speed-up vs {counts[0]} worker(s), same seed: median {statistics.median(speedups):.2f}x "
              f"[{min(speedups):.2f}-{max(speedups):.2f}]")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "args": vars(args)}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
