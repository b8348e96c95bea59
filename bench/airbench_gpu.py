"""airbench94 on the JPEG CIFAR-10: the reference package against `task=train`'s trainer, in one run, on one GPU.

  (a) decodes shared/data/cifar10-jpeg.tar.xz once (our image-folder cache) and writes WORK/cifar10/{train,test}.pt,
      the files the reference's loader reads (dicts of uint8 images [N, 32, 32, 3], int64 labels, classes);
  (b) runs the reference, PyPI `airbench==0.1.8` (`airbench.train94`, its own warm-up run first), and takes its
      own report: TTA test accuracy and `total_time_seconds` (whitening set-up + training + the final TTA evaluation);
  (c) trains examples/airbench94.arch with conf/trainer/airbench94.yaml on all 50,000 training images
      (dataset.val_size=0) through the Python API that `task=train` uses, one warm-up run first, and times the same
      parts: `train_time_s` (whitening + training steps) + `test_tta_time_s`. Each variant is a list of trainer
      overrides (precision, compile, ...), so one script compares several settings.

Prints every run, then mean and standard deviation per contender, the time ratio against the reference and the
issue's goals (>= 90.5 % mean TTA accuracy, <= 1.2x the reference's time). Writes WORK/airbench_results.json.

    python bench/airbench_gpu.py                       # GPU: reference + the default variants, 5 runs each
    python bench/airbench_gpu.py --runs 3 --variant eager= --variant compile=compile=true
    python bench/airbench_gpu.py --smoke               # CPU check that every step runs (tiny data, no reference)
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler.api import load_source  # noqa: E402
from search.data import load_dataset  # noqa: E402
from search.data.imagefolder import read_imagefolder  # noqa: E402
from search.training import seed_everything, train, trainer_config  # noqa: E402
from search.training.specialise import compile_for_data  # noqa: E402

DEFAULT_VARIANTS = {
    "fp16-pure": [],                                   # conf/trainer/airbench94.yaml as it is (airbench's numerics)
    "fp16-pure+compile": ["compile=true"],
    "bf16-autocast": ["precision=bf16"],
}
SMOKE_DATA = ["dataset.max_per_class=40", "dataset.max_test_per_class=20"]
SMOKE_TRAINER = ["device=cpu", "precision=fp32", "compile=false", "batch_size=100", "budget.epochs=2",
                 "whiten_stem.images=200", "whiten_stem.bias_epochs=1", "cpu_threads=1", "eval_batch_size=200"]


def compose(overrides: list[str]) -> Any:
    from hydra import compose as hydra_compose, initialize_config_dir
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


# ---- (a) data in the reference's format ------------------------------------------------------------------------
def write_reference_data(archive: Path, work: Path, data_overrides: list[str]) -> None:
    """WORK/cifar10/{train,test}.pt from the same decoded images our trainer uses."""
    cfg = compose(["dataset=cifar10_jpeg", f"dataset.root={archive}", *data_overrides]).dataset
    start = time.perf_counter()
    data = read_imagefolder(cfg.root, cache_dir=cfg.cache_dir, max_per_class=cfg.max_per_class,
                            max_test_per_class=cfg.max_test_per_class)
    target = work / "cifar10"
    target.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        images = data[f"{split}_images"].permute(0, 2, 3, 1).contiguous()          # NCHW -> NHWC, as airbench
        torch.save({"images": images, "labels": data[f"{split}_labels"].clone(), "classes": list(data["classes"])},
                   target / f"{split}.pt")
    print(f"(a) data: {len(data['train_labels'])} train / {len(data['test_labels'])} test images -> {target} "
          f"({time.perf_counter() - start:.1f} s, decoding included on the first use of the cache)", flush=True)


# ---- (b) the reference ------------------------------------------------------------------------------------------
def parse_final_row(text: str) -> tuple[float, float]:
    """airbench prints `| run | epoch | ... | tta_val_acc | total_time_seconds |`; the final row has epoch 'eval'."""
    for line in reversed(text.splitlines()):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[1] == "eval":
            return float(cells[5]), float(cells[6])
    raise RuntimeError(f"no final 'eval' row in airbench's output:\n{text[-2000:]}")


def run_reference(work: Path, runs: int) -> list[dict[str, float]]:
    import airbench  # the carried wheel: pip install airbench==0.1.8

    results = []
    cwd = os.getcwd()
    os.chdir(work)                                   # its loader reads ./cifar10/train.pt and ./cifar10/test.pt
    try:
        airbench.train94(run=-1, verbose=False)      # warm-up (cuDNN autotuning), as airbench's own main does
        for run in range(runs):
            captured = io.StringIO()
            start = time.perf_counter()
            with contextlib.redirect_stdout(captured):
                airbench.train94(run=run, verbose=True)
            wall = time.perf_counter() - start
            accuracy, seconds = parse_final_row(captured.getvalue())
            results.append({"test_acc_tta": accuracy, "time_s": seconds, "wall_s": wall})
            print(f"    reference run {run}: TTA acc {100 * accuracy:.2f}%  time {seconds:.3f} s  "
                  f"(wall {wall:.2f} s with its per-epoch evaluations)", flush=True)
    finally:
        os.chdir(cwd)
    return results


# ---- (c) ours ----------------------------------------------------------------------------------------------------
def run_ours(name: str, archive: Path, runs: int, data_overrides: list[str], trainer_overrides: list[str],
             arch: Path) -> list[dict[str, float]]:
    cfg = compose(["dataset=cifar10_jpeg", f"dataset.root={archive}", "dataset.val_size=0", *data_overrides,
                   "trainer=airbench94", "trainer.progress=false",
                   *[f"trainer.{o}" for o in trainer_overrides]])
    data = load_dataset(cfg.dataset)
    compiled = compile_for_data(arch, data)
    build = load_source(compiled.source, "<airbench94 model.py>")["build_model"]   # one class: compile caches
    base = trainer_config(cfg.trainer)
    print(f"    [{name}] {data.describe()}; precision {base.precision}, compile {base.compile}, "
          f"{compiled.summary['params']:,} params", flush=True)
    results = []
    for run in range(-1, runs):                      # run -1: warm-up (compilation, cuDNN autotuning)
        seed = max(run, 0) + 1000 * (run < 0)
        seed_everything(seed)
        result = train(build(), data, trainer_config(cfg.trainer, seed=seed))
        if not result.ok:
            raise RuntimeError(f"{name}: {result.message}")
        m = result.metrics
        row = {"test_acc_tta": m.get("test_acc_tta", m["test_acc"]), "test_acc": m["test_acc"],
               "train_time_s": m["train_time_s"], "tta_time_s": m.get("test_tta_time_s", m["test_time_s"])}
        row["time_s"] = row["train_time_s"] + row["tta_time_s"]
        label = "warm-up" if run < 0 else f"run {run}"
        print(f"    [{name}] {label}: TTA acc {100 * row['test_acc_tta']:.2f}% (plain {100 * row['test_acc']:.2f}%)"
              f"  time {row['time_s']:.3f} s (train {row['train_time_s']:.3f} + TTA eval {row['tta_time_s']:.3f})"
              f"  {m['images_per_s']:,.0f} img/s", flush=True)
        if run >= 0:
            results.append(row)
    return results


def summary(rows: list[dict[str, float]]) -> dict[str, float]:
    acc = [r["test_acc_tta"] for r in rows]
    times = [r["time_s"] for r in rows]

    def spread(v: list[float]) -> float:
        return statistics.stdev(v) if len(v) > 1 else 0.0

    return {"n": len(rows), "acc_mean": statistics.mean(acc), "acc_std": spread(acc),
            "time_mean": statistics.mean(times), "time_std": spread(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archive", type=Path, default=ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.xz")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "airbench")
    parser.add_argument("--arch", type=Path, default=ROOT / "examples" / "airbench94.arch")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME=OVERRIDE,OVERRIDE (trainer keys, e.g. 'c=compile=true,precision=bf16')")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="CPU: tiny data and budget, 1 run, no reference")
    args = parser.parse_args()

    archive, work = args.archive.resolve(), args.work.resolve()
    variants = {n: [o for o in rest.split(",") if o] for n, _, rest in (v.partition("=") for v in args.variant)} \
        if args.variant else dict(DEFAULT_VARIANTS)
    data_overrides = SMOKE_DATA if args.smoke else []
    if args.smoke:
        args.runs, variants = 1, {n: [*SMOKE_TRAINER, *o] for n, o in variants.items() if "compile=true" not in o}
    cuda = torch.cuda.is_available()
    print(f"torch {torch.__version__}, device {torch.cuda.get_device_name() if cuda else 'cpu (no CUDA)'}, "
          f"{args.runs} runs per contender{' [SMOKE: not a measurement]' if args.smoke else ''}", flush=True)

    write_reference_data(archive, work, data_overrides)
    results: dict[str, Any] = {"device": torch.cuda.get_device_name() if cuda else "cpu", "runs": {}, "summary": {}}
    if args.skip_reference or args.smoke or not cuda:
        print("(b) reference: skipped" + ("" if cuda else " (airbench needs CUDA)"), flush=True)
    else:
        print("(b) reference airbench.train94 (airbench==0.1.8):", flush=True)
        results["runs"]["reference"] = run_reference(work, args.runs)
    print("(c) ours: task=train's trainer, trainer=airbench94, examples/airbench94.arch:", flush=True)
    for name, overrides in variants.items():
        results["runs"][name] = run_ours(name, archive, args.runs, data_overrides, overrides, args.arch)
        results.setdefault("overrides", {})[name] = overrides

    print("\nsummary (TTA test accuracy; time = whitening + training + final TTA evaluation):")
    ref = summary(results["runs"]["reference"]) if "reference" in results["runs"] else None
    for name, rows in results["runs"].items():
        s = summary(rows)
        results["summary"][name] = s
        line = (f"  {name:<20} acc {100 * s['acc_mean']:.2f}% +- {100 * s['acc_std']:.2f}  "
                f"time {s['time_mean']:.3f} s +- {s['time_std']:.3f}  (n={s['n']})")
        if ref and name != "reference":
            ratio = s["time_mean"] / ref["time_mean"]
            s["time_ratio"] = ratio
            ok = s["acc_mean"] >= 0.905 and ratio <= 1.2
            line += f"  time x{ratio:.2f} of reference; goals (>=90.5%, <=1.2x): {'met' if ok else 'NOT met'}"
        print(line)
    out = work / "airbench_results.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
