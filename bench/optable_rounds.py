"""Does measuring the op table in several passes (keeping each entry's lowest) make the predictor steadier?

    python bench/optable_rounds.py                       # CPU, the examples, one thread, 3 trials of 1 vs 2 passes
    python bench/optable_rounds.py --trials 5 --rounds 1,2,3

Each trial measures the examples end to end (least disturbed of 3 rounds, as tests/test_predictor.py does), then
builds the table once per pass count (order alternating between trials) and predicts the same measurements from
each. Printed per trial and summarised: MAPE, max APE and the table's build time for each pass count.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler.api import CompileOptions, compile_file  # noqa: E402
from compiler.backends.runtime.measure import Settings  # noqa: E402
from search.profiling.optable import LatencyTable, fill_table, measure_compiled_ms  # noqa: E402
from search.profiling.predictor import error_stats, predict_ms  # noqa: E402


def example_models() -> list[Any]:
    """Every example, at 64x64 where its own input is large (as the predictor test does)."""
    models = []
    for path in sorted((ROOT / "examples").glob("*.arch")):
        result = compile_file(path)
        if result.summary["macs"] > 150e6:
            result = compile_file(path, options=CompileOptions(input_shape=(result.summary["input_shape"][0], 64, 64)))
        models.append(result)
    return models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--rounds", default="1,2")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    counts = [int(r) for r in args.rounds.split(",")]
    models = example_models()
    op_settings = Settings(threads=1, clock="thread", warmup=2, warmup_s=0.005, min_time_s=0.02, min_iters=5,
                           max_iters=40)
    model_settings = Settings(threads=1, clock="thread", warmup_s=0.05, min_time_s=0.1)
    print(f"{len(models)} examples, CPU, 1 thread, thread clock; load average at start {os.getloadavg()[0]:.2f}")
    rows: list[dict[str, Any]] = []
    for trial in range(args.trials):
        rounds = [[measure_compiled_ms(m, 1, model_settings) for m in models] for _ in range(3)]
        measured = [min(times) for times in zip(*rounds)]
        for passes in (counts if trial % 2 == 0 else counts[::-1]):
            table = LatencyTable.for_settings(op_settings, rotate_mb=32.0)
            start = time.perf_counter()
            fill_table(table, [m.graph for m in models], [1], op_settings, rounds=passes)
            seconds = time.perf_counter() - start
            stats = error_stats([predict_ms(table, m.graph, 1) for m in models], measured)
            rows.append({"trial": trial, "passes": passes, "mape": stats.mape, "max_ape": stats.max_ape,
                         "tau": stats.kendall_tau, "table_s": seconds, "load": os.getloadavg()[0]})
            print(f"trial {trial} passes {passes}: {stats.line()}; table {seconds:.1f} s; "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)
    for passes in counts:
        mine = [r for r in rows if r["passes"] == passes]
        mapes = [r["mape"] for r in mine]
        print(f"passes {passes}: MAPE median {statistics.median(mapes):.1f} % [{min(mapes):.1f}-{max(mapes):.1f}], "
              f"max APE worst {max(r['max_ape'] for r in mine):.1f} %, table "
              f"{statistics.median(r['table_s'] for r in mine):.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
