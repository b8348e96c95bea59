"""How fast and small are the refusals of the resource bombs in tests/test_bombs.py?

    python bench/bomb_refusal.py               # 5 runs
    python bench/bomb_refusal.py --runs 10 --bombs loop_1e9,pow_9_9_9

Each run is a fresh process of the test's driver (same limits: address space +1 GiB, 10 CPU s per bomb) that
compiles every bomb once. Printed per bomb: CPU seconds of the compile call alone (startup excluded; other processes
on a shared machine do not inflate it), wall seconds, and the growth of the resident set during the call
(compiler.backends.runtime.measure.MemoryMeter), each as median and min-max over the runs. Goal (what the test
asserted before it moved here): every refusal under 1 CPU second and 200 MiB of growth; rows over it are marked.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from _util import Stats, machine  # noqa: E402
from test_bombs import BOMBS, run_driver  # noqa: E402

GOAL_CPU_S = 1.0
GOAL_RSS_MB = 200.0


def spread(values: list[float], fmt: str) -> str:
    stats = Stats(tuple(values))
    return f"{stats.median:{fmt}} [{stats.min:{fmt}}-{stats.max:{fmt}}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--bombs", default="", help="comma-separated names (default: all)")
    args = parser.parse_args(argv)
    names = args.bombs.split(",") if args.bombs else list(BOMBS)
    print(f"{args.runs} runs of {len(names)} bombs; {machine()}")
    runs = [run_driver({name: BOMBS[name][0] for name in names}) for _ in range(args.runs)]
    print(f"{'bomb':<24} {'outcome':<10} {'CPU s median [min-max]':<26} {'wall s':<26} RSS growth MiB")
    over = 0
    for name in names:
        records = [run[name] for run in runs]
        cpu, wall, rss = ([r[key] for r in records] for key in ("cpu_s", "wall_s", "rss_growth_mb"))
        outcomes = "/".join(sorted({r["outcome"] for r in records}))
        late = max(cpu) >= GOAL_CPU_S or max(rss) >= GOAL_RSS_MB
        over += late
        print(f"{name:<24} {outcomes:<10} {spread(cpu, '.3f'):<26} {spread(wall, '.3f'):<26} "
              f"{spread(rss, '.1f')}{'  OVER GOAL' if late else ''}")
    print(f"{len(names) - over}/{len(names)} bombs refused under {GOAL_CPU_S:g} CPU s and {GOAL_RSS_MB:g} MiB in "
          f"every run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
