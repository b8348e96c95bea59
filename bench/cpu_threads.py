"""`trainer.cpu_threads`: the time of `task=train` with 1 and 2 threads and with `auto` (the default), side by side.

    python bench/cpu_threads.py                              # resnet20 and a small net on digits, n=3 each
    python bench/cpu_threads.py --runs 5 --threads 1,2,4,auto --json out.json
    python bench/cpu_threads.py --models resnet20 trainer.budget.epochs=5

Each run is the real CLI (`python -m compiler task=train arch=... dataset=digits trainer.cpu_threads=T`) in a fresh
output folder, alternating the settings within each round so that drift in the machine's load hits all alike. Printed
per model and setting: the median and min-max of the command's wall time (start-up included) and of the training
time the trainer reports (`train_time_s`), and the thread count `auto` chose (metrics.json `cpu_threads`). Run it on
a quiet machine: the figures say nothing when other processes share the cores.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from _util import ROOT, run_compiler
SMALL = """# a small CNN for the 8x8 digits (the kind of model a search trains)
model small(num_classes = 10, in_channels = 1, size = 8) {
    input x: [in_channels, size, size]
    x = x -> conv(16, 3) -> bn -> relu -> conv(16, 3) -> bn -> relu -> maxpool(2)
    output x -> global_avgpool -> flatten -> linear(num_classes)
}
"""


def one_run(arch: Path, threads: str, extra: list[str], out: Path) -> dict[str, Any]:
    command = ["task=train", f"arch={arch}", "dataset=digits",
               f"trainer.cpu_threads={threads}", "trainer.progress=false", f"out_dir={out}", *extra]
    wall = run_compiler(command)
    metrics = json.loads((out / "metrics.json").read_text())
    return {"threads": threads, "wall_s": wall, "train_s": metrics["train_time_s"],
            "used_threads": metrics.get("cpu_threads"), "test_acc": metrics.get("test_acc")}


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):7.2f} s (min-max {min(values):.2f}-{max(values):.2f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet20,small", help="resnet20 (examples/resnet20.arch), small, or "
                        "paths of .arch files")
    parser.add_argument("--threads", default="1,2,auto")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", default=None)
    parser.add_argument("extra", nargs="*", help="more overrides, e.g. trainer.budget.epochs=5")
    args = parser.parse_args(argv)
    settings = args.threads.split(",")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"task=train on digits, {cores} usable cores, n={args.runs}; overrides {args.extra or 'none'}")
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        small = Path(tmp) / "small.arch"
        small.write_text(SMALL)
        models = {name: (ROOT / "examples" / f"{name}.arch" if name == "resnet20" else small if name == "small"
                         else Path(name)) for name in args.models.split(",")}
        for name, arch in models.items():
            rows = results.setdefault(name, [])
            for run in range(args.runs):
                order = settings if run % 2 == 0 else settings[::-1]
                for threads in order:
                    rows.append(one_run(arch, threads, args.extra, Path(tmp) / f"{name}-{threads}-{run}"))
            print(f"\n{name} ({arch.name})")
            for threads in settings:
                mine = [r for r in rows if r["threads"] == threads]
                used = sorted({r["used_threads"] for r in mine})
                print(f"  cpu_threads={threads:<5} wall {spread([r['wall_s'] for r in mine])}   "
                      f"training {spread([r['train_s'] for r in mine])}   threads used {used}   "
                      f"test_acc {statistics.median([r['test_acc'] for r in mine]):.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"cores": cores, "runs": args.runs, "extra": args.extra,
                                               "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
