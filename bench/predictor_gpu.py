"""The prepared GPU run of the profiling backend: one script, figures printed and written as it goes.

    python bench/predictor_gpu.py --out build/gpu_bench        # on a CUDA machine (a few minutes on one H100/H200)
    python bench/predictor_gpu.py --smoke --out /tmp/smoke     # CPU smoke test: tiny sizes, checks the script runs

Part 1, harness accuracy: for the examples, our harness's median latency against torch.utils.benchmark.Timer's
blocked_autorange() median, same model and settings, side by side in the same process (bench/profile_accuracy.py),
on CUDA at batch 1 and 256 in fp16 channels_last. Goal: within 3 %. Run-to-run spread over the repeats reported.

Part 2, latency predictor: N (>= 50) distinct random architectures of the mobilenet space
(examples/spaces/mobilenet.arch: kernel 3/5/7, expansion 3/6 and depth per stage, width multiplier) at 224x224,
or with --synthetic, generated MobileNetV2-like networks that vary kernel and expansion per block
(search/profiling/synthetic.py). A per-op latency table is measured for all their ops (each distinct op once per
batch size), then every network is measured end to end with the harness and predicted from the table. Reported:
MAPE (goal <= 10 %), median/max error, bias, Kendall tau; also, for information, the error after one scale factor
fitted on the even-numbered networks (evaluated on the odd ones).

Writes OUT/accuracy.json, OUT/latency_table.json and OUT/predictor.json. Needs only torch and this repository
(lark, jinja2).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from profile_accuracy import HEADER, compare, example_files, format_row, summarize  # noqa: E402

from compiler.api import compile_file, compile_source  # noqa: E402
from compiler.backends.runtime.measure import Settings  # noqa: E402
from search.profiling.optable import LatencyTable, distinct_ops, fill_table, measure_compiled_ms  # noqa: E402
from search.profiling.predictor import error_stats, predict_ms  # noqa: E402
from search.profiling.synthetic import mobilenet_like, sample_space  # noqa: E402

SMOKE = {"device": "cpu", "dtype": "fp32", "threads": 1, "accuracy_batch_sizes": "1,2", "predictor_batch_sizes": "1",
         "examples": "resnet20", "repeats": 2, "archs": 3, "resolution": 32, "min_time": 0.05,
         "model_min_time": 0.05, "clock": "thread", "rotate_mb": 32.0}  # the CPU's better practice (see task.py)
SPACE = ROOT / "examples" / "spaces" / "mobilenet.arch"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="build/gpu_bench")
    parser.add_argument("--smoke", action="store_true", help="tiny CPU run (overrides the sizes below)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="fp16")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--clock", choices=("wall", "thread"), default="wall", help="CPU with --threads 1 only")
    parser.add_argument("--cpu", type=int, default=None, help="pin the timing thread to this CPU core")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-predictor", action="store_true")
    parser.add_argument("--examples", default="",
                        help="part 1: comma-separated examples, measured in this order (default: all)")
    parser.add_argument("--accuracy-batch-sizes", default="1,256")
    parser.add_argument("--block-time", type=float, default=None,
                        help="part 1: our harness's timed block in seconds (default: the harness's own)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=0.3, help="part 1: seconds per tool per repeat")
    parser.add_argument("--accuracy-budget", type=float, default=240.0,
                        help="part 1: start no further example after this many seconds (leaves time for part 2)")
    parser.add_argument("--archs", type=int, default=50, help="part 2: random networks")
    parser.add_argument("--synthetic", action="store_true",
                        help="part 2: generated MobileNetV2-like networks instead of samples of the mobilenet space")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--predictor-batch-sizes", default="1,64")
    parser.add_argument("--model-min-time", type=float, default=0.2, help="part 2: seconds per network")
    parser.add_argument("--model-rounds", type=int, default=1,
                        help="part 2: measure all networks this many times in turn, keep each one's lowest median")
    parser.add_argument("--op-min-time", type=float, default=0.01, help="part 2: seconds per op entry")
    parser.add_argument("--op-rounds", type=int, default=1,
                        help="part 2: measure the table this many times in passes, keep each entry's lowest")
    parser.add_argument("--rotate-mb", type=float, default=0.0, help="part 2: cold-cache footprint per op (MB)")
    args = parser.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("no CUDA GPU here: run with --smoke (CPU) or on a GPU machine")
    return args


def sizes(text: str) -> list[int]:
    return [int(b) for b in text.split(",")]


def write(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n")


def device_line(args: argparse.Namespace) -> str:
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    return (f"{name}, torch {torch.__version__}, CUDA {torch.version.cuda}, {args.dtype}"
            f"{' channels_last' if args.channels_last else ''}")


def harness_accuracy(args: argparse.Namespace, out: Path) -> None:
    settings = Settings(device=args.device, dtype=args.dtype, channels_last=args.channels_last, threads=args.threads,
                        clock=args.clock, min_time_s=args.min_time, block_time_s=args.block_time, cpu=args.cpu)
    goal = 3.0 if args.device.startswith("cuda") else 5.0
    print(f"== part 1: harness vs Timer on {device_line(args)}, {args.repeats} repeats", flush=True)
    print(HEADER)
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    for path in example_files(args.examples):
        if time.perf_counter() - start > args.accuracy_budget:
            print(f"(part 1 stopped before {path.stem}: its {args.accuracy_budget:.0f} s budget is spent)")
            break
        result = compile_file(path)
        for batch in sizes(args.accuracy_batch_sizes):
            rows.append(compare(result, batch, settings, args.repeats))
            print(format_row(rows[-1]), flush=True)
            write(out / "accuracy.json", {"device": device_line(args), "rows": rows})
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
    for batch in sizes(args.accuracy_batch_sizes):
        done = [r for r in rows if r["batch_size"] == batch]
        if done:
            print(f"batch {batch}: " + summarize(done, goal))


def calibrated(predicted: list[float], measured: list[float]) -> dict[str, Any]:
    """One scale fitted on the even-numbered networks (median ratio), evaluated on the odd-numbered ones."""
    scale = statistics.median(m / p for m, p in zip(measured[0::2], predicted[0::2]))
    stats = error_stats([scale * p for p in predicted[1::2]], measured[1::2])
    return {"scale": scale, "held_out": stats.__dict__, "summary": stats.line()}


def predictor_error(args: argparse.Namespace, out: Path) -> None:
    op_settings = Settings(device=args.device, dtype=args.dtype, channels_last=args.channels_last,
                           threads=args.threads, clock=args.clock, warmup=3, warmup_s=0.005,
                           min_time_s=args.op_min_time, min_iters=10, cpu=args.cpu)
    model_settings = Settings(device=args.device, dtype=args.dtype, channels_last=args.channels_last,
                              threads=args.threads, clock=args.clock, warmup=5, warmup_s=0.05,
                              min_time_s=args.model_min_time, cpu=args.cpu)
    source = "generated MobileNetV2-like networks" if args.synthetic else f"samples of {SPACE.relative_to(ROOT)}"
    print(f"== part 2: latency predictor over {args.archs} random {source} at {args.resolution}x{args.resolution} "
          f"on {device_line(args)}", flush=True)
    start = time.perf_counter()
    named = ([(f"mnet_{args.seed + k}", compile_source(mobilenet_like(args.seed + k, resolution=args.resolution)))
              for k in range(args.archs)] if args.synthetic
             else sample_space(SPACE, args.archs, args.seed, size=args.resolution))
    models = [m for _, m in named]
    batch_sizes = sizes(args.predictor_batch_sizes)
    table = LatencyTable.for_settings(op_settings, args.rotate_mb)
    graphs = [m.graph for m in models]
    print(f"{len(distinct_ops(graphs))} distinct ops over {sum(len(g.nodes) for g in graphs)} nodes; measuring the "
          f"table for batch sizes {batch_sizes} ...", flush=True)

    def progress(done: int, total: int) -> None:
        if done % 200 == 0 or done == total:
            print(f"  {done}/{total} op entries, {time.perf_counter() - start:.0f} s", flush=True)
    fill_table(table, graphs, batch_sizes, op_settings, progress, rounds=args.op_rounds)
    table.save(out / "latency_table.json")
    report: dict[str, Any] = {"device": device_line(args), "table_device": table.device, "settings": table.settings,
                              "source": source, "archs": args.archs, "resolution": args.resolution,
                              "model_rounds": args.model_rounds, "batch_sizes": {}}
    for batch in batch_sizes:
        rounds = [[measure_compiled_ms(m, batch, model_settings) for m in models] for _ in range(args.model_rounds)]
        rows = []
        for (name, model), measured in zip(named, map(min, zip(*rounds))):
            predicted = predict_ms(table, model.graph, batch)  # the shipped predictor (overlap on a GPU)
            summed = predict_ms(table, model.graph, batch, mode="sum")  # session 1's rule, for comparison
            rows.append({"model": name, "params": model.summary["params"], "macs": model.summary["macs"],
                         "measured_ms": measured, "predicted_ms": predicted, "sum_predicted_ms": summed,
                         "error_pct": 100 * (predicted - measured) / measured})
        predicted_ms = [r["predicted_ms"] for r in rows]
        measured_ms = [r["measured_ms"] for r in rows]
        stats = error_stats(predicted_ms, measured_ms)
        summed_stats = error_stats([r["sum_predicted_ms"] for r in rows], measured_ms)
        part = {"rows": rows, "stats": stats.__dict__, "summary": stats.line(),
                "sum_stats": summed_stats.__dict__, "sum_summary": summed_stats.line()}
        if len(rows) >= 4:
            part["calibrated"] = calibrated(predicted_ms, measured_ms)
        report["batch_sizes"][str(batch)] = part
        write(out / "predictor.json", report)
        print(f"batch {batch}: measured {min(measured_ms):.3f}-{max(measured_ms):.3f} ms; predictor {stats.line()} "
              f"(goal MAPE <= 10 %)", flush=True)
        print(f"batch {batch}: sum of isolated op latencies instead: {summed_stats.line()}", flush=True)
        if "calibrated" in part:
            print(f"batch {batch}: with one scale {part['calibrated']['scale']:.3f} fitted on the even networks, "
                  f"odd networks: {part['calibrated']['summary']}", flush=True)
    print(f"part 2 took {time.perf_counter() - start:.0f} s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if not args.skip_accuracy:
        harness_accuracy(args, out)
    if not args.skip_predictor:
        predictor_error(args, out)
    print(f"done in {time.perf_counter() - start:.0f} s; figures in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
