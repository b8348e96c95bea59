"""Helpers shared by the benchmarks: repeated measurement, interleaving, a spread summary, running the command line."""
from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Stats:
    """Median and spread of a list of timings in seconds."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    @property
    def iqr(self) -> tuple[float, float]:
        """(25th, 75th) percentile; needs at least two samples."""
        q = statistics.quantiles(self.samples, n=4, method="inclusive")
        return q[0], q[2]

    def fmt_ms(self) -> str:
        lo, hi = self.iqr
        return (f"{self.median * 1e3:8.2f} ms  (IQR {lo * 1e3:.2f}-{hi * 1e3:.2f}, "
                f"min-max {self.min * 1e3:.2f}-{self.max * 1e3:.2f})")


def time_once(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(fn: Callable[[], object], repeats: int, warmup: int = 1) -> Stats:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed."""
    for _ in range(warmup):
        fn()
    return Stats(tuple(time_once(fn) for _ in range(repeats)))


def interleaved(fns: Mapping[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, Stats]:
    """Time several callables in alternation (a, b, a, b, ...) so that load from other processes on the machine
    hits all of them alike; the order within each round alternates too, so neither always runs first."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            samples[name].append(time_once(fns[name]))
    return {name: Stats(tuple(s)) for name, s in samples.items()}


def machine() -> str:
    import torch
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs (load average {load}), "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}")


def paired_ratios(ours: Stats, theirs: Stats) -> Stats:
    """Per-round ratios of two interleaved series (round i of each ran back to back, under the same load):
    their spread shows how far the ratio of medians can be trusted."""
    return Stats(tuple(a / b for a, b in zip(ours.samples, theirs.samples, strict=True)))


def ratio_spread(ours: Stats, theirs: Stats) -> str:
    paired = paired_ratios(ours, theirs)
    lo, hi = paired.iqr
    return f"per-round ratios: median {paired.median:.3f}, IQR {lo:.3f}-{hi:.3f}"


def check_goal(name: str, value: float, lo: float | None, hi: float | None) -> str:
    ok = (lo is None or value >= lo) and (hi is None or value <= hi)
    bounds = f"{'' if lo is None else f'{lo} <= '}ratio{'' if hi is None else f' <= {hi}'}"
    return f"{name}: ratio {value:.3f} -> goal {bounds}: {'met' if ok else 'NOT met'}"


def geometric_mean(values: Sequence[float]) -> float:
    return statistics.geometric_mean(values)


def run_compiler(args: Sequence[str], log: Path | None = None) -> float:
    """`python -m compiler ARGS` from the checkout (what users run); its wall seconds. Output goes to `log` (appended,
    after the command line) or is kept for the error; a failed run stops the benchmark with the end of its output."""
    command = [sys.executable, "-m", "compiler", *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    start = time.perf_counter()
    if log is None:
        proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        output = proc.stdout[-2000:] + proc.stderr[-3000:]
    else:
        with log.open("a") as handle:
            handle.write("$ " + " ".join(command) + "\n")
            handle.flush()
            proc = subprocess.run(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
        output = log.read_text()[-4000:]
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed (exit {proc.returncode}):\n{output}")
    return wall
