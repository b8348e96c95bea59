"""How steady is the host that issues a GPU's kernels? Launch-bound networks (small models at batch 1) run at the
speed of the one CPU core calling the CUDA driver, so the host's own noise sets a floor under any comparison of
their timings. This script samples that speed for a few seconds, alternating short slices with the timing thread
free to migrate and pinned to one core (``os.sched_setaffinity``, what ``Settings.cpu`` / ``--cpu`` does):

    python bench/host_noise.py --cpu 2 --seconds 8            # on a CUDA machine: kernel launches and pure Python
    python bench/host_noise.py --device cpu --seconds 2       # pure Python only (CPU smoke run)

Printed per mode: the time to issue one tiny kernel (``torch.add`` on 1-element tensors, no synchronisation) and a
fixed pure-Python loop, as median, p10-p90 and p90/p10, plus each slice's median in time order (a host that
switches between a fast and a slow state shows two levels there).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compiler.backends.runtime.measure import percentile, pinned  # noqa: E402

LAUNCHES = 20       # tiny kernels per launch sample
SPIN = 2000         # loop iterations per Python sample


def python_sample() -> float:
    start = time.perf_counter()
    total = 0
    for i in range(SPIN):
        total += i * i
    return (time.perf_counter() - start) * 1e6 / SPIN  # us per iteration


def launch_sample(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> float:
    start = time.perf_counter()
    for _ in range(LAUNCHES):
        torch.add(a, b, out=out)
    return (time.perf_counter() - start) * 1e6 / LAUNCHES  # us per launch


def run_slice(seconds: float, cuda: bool, tensors: tuple[torch.Tensor, ...]) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"python_us": [], "launch_us": []}
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        samples["python_us"].append(python_sample())
        if cuda:
            samples["launch_us"].append(launch_sample(*tensors))
            n += 1
            if n % 50 == 0:
                torch.cuda.synchronize()  # keep the queue short (not timed)
    return samples


def describe(values: list[float]) -> dict[str, float]:
    p10, p90 = percentile(values, 10), percentile(values, 90)
    return {"n": len(values), "median": statistics.median(values), "p10": p10, "p90": p90, "p90_over_p10": p90 / p10}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--cpu", type=int, default=None, help="core to pin to (default: the third allowed one)")
    parser.add_argument("--seconds", type=float, default=8.0, help="total, split over both modes")
    parser.add_argument("--slice", type=float, default=0.4, help="seconds per slice")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    allowed = sorted(os.sched_getaffinity(0))
    cpu = args.cpu if args.cpu is not None else allowed[min(2, len(allowed) - 1)]
    cuda = args.device.startswith("cuda")
    tensors: tuple[torch.Tensor, ...] = ()
    if cuda:
        tensors = tuple(torch.ones(1, device=args.device) for _ in range(3))
        for _ in range(200):
            launch_sample(*tensors)
        torch.cuda.synchronize()
    modes = {"free": None, "pinned": cpu}
    slices: dict[str, list[dict[str, list[float]]]] = {m: [] for m in modes}
    for k in range(max(2, round(args.seconds / args.slice))):
        mode = "free" if k % 2 == 0 else "pinned"
        with pinned(modes[mode]):
            slices[mode].append(run_slice(args.slice, cuda, tensors))
    report: dict[str, object] = {"allowed_cpus": len(allowed), "pinned_cpu": cpu, "torch": torch.__version__,
                                 "device": torch.cuda.get_device_name() if cuda else "cpu", "modes": {}}
    print(f"host noise on {report['device']}: {len(allowed)} cpus allowed, pinned mode uses cpu {cpu}; "
          f"slices of {args.slice} s alternating")
    for mode, parts in slices.items():
        entry: dict[str, object] = {}
        for kind in ("launch_us", "python_us"):
            values = [v for p in parts for v in p[kind]]
            if not values:
                continue
            stats = describe(values)
            per_slice = [statistics.median(p[kind]) for p in parts]
            entry[kind] = {**stats, "slice_medians": per_slice}
            print(f"{mode:>6} {kind:<9} median {stats['median']:7.3f} us  p10-p90 {stats['p10']:.3f}-{stats['p90']:.3f}"
                  f"  p90/p10 {stats['p90_over_p10']:.2f}  slice medians " + " ".join(f"{v:.2f}" for v in per_slice))
        report["modes"][mode] = entry  # type: ignore[index]
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
