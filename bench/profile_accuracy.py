"""How well does our harness measure? Its median latency against torch.utils.benchmark.Timer's
blocked_autorange() median on the same model, input and settings, measured side by side in the same process.

    python bench/profile_accuracy.py                                  # every example, CPU, batch 1, 5 repeats
    python bench/profile_accuracy.py --examples resnet18,resnet20 --threads 2 --json out.json
    python bench/profile_accuracy.py --threads 1 --clock thread         # both tools on thread CPU time
    python bench/profile_accuracy.py --device cuda --batch-sizes 1,256 --dtype fp16 --channels-last
    python bench/profile_accuracy.py --device cuda --examples airbench94 --block-time 0   # one event pair per call

For each example and batch size, each of the R repeats measures with both tools (alternating which goes first, so
drift hits both alike). Printed: the median over repeats of each tool's median, the run-to-run spread (min-max
over the repeats), and the difference of the two (goal: within 5 % on the CPU, 3 % on CUDA); also the median of
the repeats' paired differences, which a host drifting between fast and slow phases (seen on the GPU VMs: launch-
bound models 1.5-1.9x slower for seconds at a time) leaves unbiased. --cpu N pins both tools to one core. Our harness is
the in-process API, which runs the very code the generated profile.py embeds (compiler/backends/runtime/measure.py).
Needs only torch and this repository (lark, jinja2).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import timeit
from pathlib import Path
from typing import Any

import torch
from torch.utils.benchmark import Timer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler.api import CompileResult, compile_file  # noqa: E402
from compiler.backends.runtime.measure import Settings, make_inputs, pinned, prepare_module, profile_module  # noqa: E402


def timer_median_ms(model: torch.nn.Module, x: torch.Tensor, settings: Settings) -> float:
    """torch.utils.benchmark's figure: median of block means (it synchronizes CUDA around each block)."""
    clock = {"wall": timeit.default_timer, "thread": time.thread_time}[settings.clock]  # what ours uses
    if settings.device.startswith("cuda"):
        timer = Timer("model(x)", globals={"model": model, "x": x})  # its default timer synchronizes CUDA
    else:
        timer = Timer("model(x)", globals={"model": model, "x": x}, timer=clock,
                      num_threads=settings.threads or torch.get_num_threads())
    with torch.no_grad():
        model(x)  # same warm start as ours: the model has already run at this batch size
        return timer.blocked_autorange(min_run_time=max(settings.min_time_s, 0.2)).median * 1e3


def ours_median_ms(model: torch.nn.Module, input_shape: list[int], settings: Settings) -> float:
    row = profile_module(model, [input_shape], settings)["results"][0]
    if "error" in row:
        raise RuntimeError(row["error"])
    return float(row["median_ms"])


def compare(result: CompileResult, batch_size: int, base: Settings, repeats: int) -> dict[str, Any]:
    """Both tools, ``repeats`` times each, on one built model at one batch size."""
    settings = Settings(**{**base.__dict__, "batch_sizes": (batch_size,)})
    model, _ = prepare_module(result.build(), settings)
    shape = list(result.graph.inputs[0].shape)
    x = make_inputs([shape], batch_size, torch.device(settings.device), settings)[0]
    ours: list[float] = []
    theirs: list[float] = []
    with pinned(settings.cpu):  # both tools on the same core (ours pins itself too; Timer would not)
        for r in range(repeats):
            order = (("ours", "timer") if r % 2 == 0 else ("timer", "ours"))
            for tool in order:
                if tool == "ours":
                    ours.append(ours_median_ms(model, shape, settings))
                else:
                    theirs.append(timer_median_ms(model, x, settings))
    ours_mid, theirs_mid = statistics.median(ours), statistics.median(theirs)
    paired = [100 * (o - t) / t for o, t in zip(ours, theirs)]  # each pair ran back to back: drift cancels
    return {"model": result.graph.name, "batch_size": batch_size, "ours_ms": ours, "timer_ms": theirs,
            "ours_median_ms": ours_mid, "timer_median_ms": theirs_mid,
            "ours_spread_pct": 100 * (max(ours) - min(ours)) / ours_mid,
            "timer_spread_pct": 100 * (max(theirs) - min(theirs)) / theirs_mid,
            "diff_pct": 100 * (ours_mid - theirs_mid) / theirs_mid, "paired_diff_pct": [min(paired), max(paired)],
            "paired_median_diff_pct": statistics.median(paired)}


def format_row(row: dict[str, Any]) -> str:
    return (f"{row['model']:<16} {row['batch_size']:>5} {row['ours_median_ms']:>10.3f} "
            f"[{min(row['ours_ms']):.3f}-{max(row['ours_ms']):.3f}] {row['timer_median_ms']:>10.3f} "
            f"[{min(row['timer_ms']):.3f}-{max(row['timer_ms']):.3f}] {row['diff_pct']:>+7.2f}%  "
            f"spread ours {row['ours_spread_pct']:.1f}% timer {row['timer_spread_pct']:.1f}%; "
            f"paired diff median {row['paired_median_diff_pct']:+.2f}%")


HEADER = (f"{'model':<16} {'batch':>5} {'ours ms':>10} [min-max]     {'Timer ms':>10} [min-max]     {'diff':>8}  "
          f"run-to-run spread (max-min)/median")


def summarize(rows: list[dict[str, Any]], goal_pct: float) -> str:
    """Both comparisons: of the two medians over repeats, and the median of the repeats' paired differences (each
    pair measured back to back, so a host that drifts between fast and slow phases affects both tools alike)."""
    diffs = [abs(r["diff_pct"]) for r in rows]
    paired = [abs(r["paired_median_diff_pct"]) for r in rows]
    within = sum(d <= goal_pct for d in diffs)
    return (f"{within}/{len(rows)} within {goal_pct:g} % of Timer; |diff| median {statistics.median(diffs):.2f} %, "
            f"max {max(diffs):.2f} %; paired: {sum(d <= goal_pct for d in paired)}/{len(rows)} within, "
            f"max {max(paired):.2f} %")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", default="", help="comma-separated names in examples/ (default: all)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", default="1")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--clock", choices=("wall", "thread"), default="wall",
                        help="CPU with --threads 1: 'thread' makes both tools time the thread's CPU time, which "
                             "machines shared with other jobs disturb less")
    parser.add_argument("--block-time", type=float, default=None,
                        help="our harness's timed block in seconds (default: 0.01 on cuda, 0 on cpu)")
    parser.add_argument("--cpu", type=int, default=None, help="pin the measuring thread to this CPU core")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=0.5, help="seconds each tool times per repeat")
    parser.add_argument("--goal", type=float, default=None, help="goal in %% (default 5 on cpu, 3 on cuda)")
    parser.add_argument("--json", default=None, help="write all figures here")
    return parser.parse_args(argv)


def example_files(names: str) -> list[Path]:
    """The named examples in the order given (default: all, sorted)."""
    files = {f.stem: f for f in sorted((ROOT / "examples").glob("*.arch"))}
    if not names:
        return list(files.values())
    wanted = names.split(",")
    unknown = [w for w in wanted if w not in files]
    if unknown:
        raise SystemExit(f"unknown example(s) {unknown}; known: {sorted(files)}")
    return [files[w] for w in wanted]


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    settings = Settings(device=args.device, dtype=args.dtype, channels_last=args.channels_last, threads=args.threads,
                        clock=args.clock, min_time_s=args.min_time, block_time_s=args.block_time, cpu=args.cpu)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    goal = args.goal if args.goal is not None else (3.0 if args.device.startswith("cuda") else 5.0)
    print(f"harness vs torch.utils.benchmark.Timer on {args.device} ({torch.__version__}), {args.dtype}"
          f"{' channels_last' if args.channels_last else ''}, threads {settings.threads or torch.get_num_threads()}, "
          f"{args.clock} clock, {args.repeats} repeats of >= {args.min_time} s each"
          f"{'' if args.cpu is None else f', pinned to cpu {args.cpu}'}")
    print(HEADER)
    rows = []
    start = time.perf_counter()
    for path in example_files(args.examples):
        result = compile_file(path)
        for batch in sizes:
            rows.append(compare(result, batch, settings, args.repeats))
            print(format_row(rows[-1]), flush=True)
            if args.json:  # keep what is done so far (a run cut short still leaves figures)
                Path(args.json).write_text(json.dumps({"rows": rows, "settings": vars(args)}, indent=1) + "\n")
    print(summarize(rows, goal) + f"; {time.perf_counter() - start:.0f} s")
    return rows


if __name__ == "__main__":
    run(parse_args())
