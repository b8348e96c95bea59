"""DARTS and its variants on NAS-Bench-201's cell space over the JPEG CIFAR-10, judged by the benchmark's table.

    python bench/darts_nb201.py --device cpu --variants plain,beta,drnas,pc,gdas --seeds 0,1,2 --json OUT.json
    python bench/darts_nb201.py --device cuda --variants default --seeds 0,1,2

Each (variant, seed) is one run of the command line, ``python -m compiler +search=darts space=nb201
dataset=cifar10_jpeg ...`` in a subprocess with its own ``out_dir`` (so the benchmark measures what users run);
the run searches, derives one cell (``search.train_derived=false``: no training from scratch) and writes
``history.jsonl`` and ``alphas.json``, from which this script reads the derived cell and the search time. The cell
is looked up in the benchmark's table (``--table``, CIFAR-10 test accuracy after the benchmark's 200-epoch
training). A run directory that already holds a result is read, not run again; an interrupted run resumes from its
checkpoint. Printed: per run the cell, its accuracy, the search time; per variant mean, population std, min and
mean search minutes; ``--json`` writes all of it.

Settings (``--device``), the same for every variant:
  cpu   the reduced setting: 8 channels, 1 cell per stage (the benchmark: 16 and 5), the images decoded at 16x16
        (the benchmark: 32x32), all 50,000 training images (5,000 held out for validation, the rest split in
        halves of 22,500 for weights and architecture), 4 epochs (1,404 steps of each kind), one CPU thread.
  cuda  the benchmark's supernet (16 channels, 5 cells per stage) on the full training split (45,000 images,
        5,000 validation), for a GPU session of a few minutes per seed.
Variants (each a list of overrides on top of the setting; ``default`` is the shipped configuration):
  plain  DARTS, first order, softmax, no remedy;   beta   DARTS with beta-decay (beta-DARTS);
  drnas  Dirichlet mixing (DrNAS);   pc  partial channels (PC-DARTS, K=2, edge normalisation);
  gdas   one Gumbel-sampled path per step (GDAS).
  pt_val, pt_naswot, pc_pt_val, pc_pt_naswot   plain or pc, derived by perturbation (search.derive.method=
         perturbation) scored by the supernet's validation accuracy (DARTS-PT) or NASWOT (Zero-Cost-PT), one
         decision made one-hot after the other (discretize=progressive); with the suffix _once each decision scored
         in the supernet as trained (discretize=once; default = plain + pt_naswot_once); with the suffix _tuned
         progressive with 100 weight steps of fine-tuning after each decision (DARTS-PT's, finetune_steps=100).
         The record also gives the table accuracy of the argmax cell of the same supernet (argmax_accuracy).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from search import nb201  # noqa: E402
from search.darts.strategy import CHECKPOINT_FILE as CHECKPOINT  # noqa: E402

SETTINGS: dict[str, list[str]] = {
    "cpu": ["+space.params.channels=8", "+space.params.cells=1", "dataset.image_size=[16,16]", "search.epochs=4",
            "search.device=cpu", "search.cpu_threads=1"],
    "cuda": ["+space.params.channels=16", "+space.params.cells=5", "search.epochs=10", "search.device=cuda"],
}
VARIANTS: dict[str, list[str]] = {
    "default": [],
    "plain": ["search.relaxation=softmax", "search.beta_decay.weight=0", "search.partial_channels=1"],
    "beta": ["search.relaxation=softmax", "search.beta_decay.weight=50", "search.partial_channels=1"],
    "drnas": ["search.relaxation=dirichlet", "search.beta_decay.weight=0", "search.partial_channels=1"],
    "pc": ["search.relaxation=softmax", "search.beta_decay.weight=0", "search.partial_channels=2"],
    "gdas": ["search.relaxation=gumbel", "search.beta_decay.weight=0", "search.partial_channels=1"],
}
DISCRETIZE = {"": ["search.derive.discretize=progressive"], "_once": ["search.derive.discretize=once"],
              "_tuned": ["search.derive.discretize=progressive", "search.derive.finetune_steps=100"]}
PERTURBATION = {f"pt_{name}{suffix}": ["search.derive.method=perturbation", f"search.derive.score={score}", *how]
                for name, score in (("val", "val_acc"), ("naswot", "naswot")) for suffix, how in DISCRETIZE.items()}
for _name, _base in (("plain", "plain"), ("pc", "pc")):   # each trained supernet derived by perturbation too
    for _pt, _overrides in PERTURBATION.items():
        VARIANTS[_pt if _name == "plain" else f"{_name}_{_pt}"] = [*VARIANTS[_base], *_overrides]
ARGMAX = ["search.derive.method=argmax"]
for _name in ("plain", "beta", "drnas", "pc", "gdas"):
    VARIANTS[_name] = [*VARIANTS[_name], *ARGMAX]


def load_accuracies(path: Path) -> dict[str, float]:
    with path.open(newline="") as handle:
        return {row["arch"]: float(row["accuracy"]) for row in csv.DictReader(handle)}


def cell_string(decisions: dict[str, str]) -> str:
    """The benchmark's string of a derived nb201.arch cell: its decisions are the edges in string order."""
    ops = [decisions[f"edge_{j}_{i}.op"] for j, i in nb201.EDGES]
    return nb201.genotype_to_string([nb201.OPS.index(op) for op in ops])


def trajectory(epochs: Sequence[dict[str, Any]], accuracies: dict[str, float]) -> list[float | None]:
    """The table accuracy of the cell each epoch's probabilities would derive (argmax, never `none`)."""
    result = []
    for epoch in epochs:
        ops = []
        for j, i in nb201.EDGES:
            p = epoch["softmax"][f"edge_{j}_{i}.op"]
            ops.append(max(range(1, len(p)), key=lambda k: (p[k], -k)))
        result.append(accuracies.get(nb201.genotype_to_string(ops)))
    return result


def run_one(variant: str, seed: int, args: argparse.Namespace, extra: Sequence[str]) -> dict[str, Any]:
    out = args.work / args.device / (f"{variant}-{args.label}" if args.label else variant) / f"seed{seed}"
    history = out / "history.jsonl"
    wall = None
    if not history.exists():
        source = (args.work / args.device / args.supernets_from / f"seed{seed}" / CHECKPOINT
                  if args.supernets_from else None)
        if source is not None and source.exists() and not (out / CHECKPOINT).exists():
            out.mkdir(parents=True, exist_ok=True)   # the trained supernet of that run: only the derivation runs
            shutil.copyfile(source, out / CHECKPOINT)
            print(f"    supernet from {source}", flush=True)
        command = [sys.executable, "-m", "compiler", "+search=darts", "space=nb201", "dataset=cifar10_jpeg",
                   *SETTINGS[args.device], *VARIANTS[variant], *extra, "search.train_derived=false",
                   f"seed={seed}", f"out_dir={out}"]
        print(f"--- {variant} seed {seed}: {' '.join(command[2:])}", flush=True)
        start = time.perf_counter()
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        log = out.parent / f"seed{seed}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as handle:
            proc = subprocess.run(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
        wall = time.perf_counter() - start
        if proc.returncode != 0 or not history.exists():
            print(f"    failed (exit {proc.returncode}); see {log}", flush=True)
            return {"variant": variant, "seed": seed, "status": f"exit {proc.returncode}", "log": str(log)}
    record = json.loads(history.read_text().splitlines()[0])
    alphas = json.loads((out / "alphas.json").read_text())
    epochs, selection = alphas["epochs"], alphas.get("selection")
    cell = cell_string(record["decisions"])
    derive_s = selection["seconds"] if selection else 0.0
    result = {"variant": variant, "seed": seed, "status": "ok", "cell": cell,
              "accuracy": args.accuracies.get(cell),
              "search_s": round(sum(e["seconds"] for e in epochs) + derive_s, 1), "derive_s": round(derive_s, 1),
              "wall_s": round(wall, 1) if wall is not None else None, "epochs": len(epochs),
              "supernet_val_acc": epochs[-1]["val_acc"],
              "top_probability": round(max(max(p) for p in epochs[-1]["softmax"].values()), 4),
              "trajectory": trajectory(epochs, args.accuracies)}
    if selection:   # the same supernet derived by its largest weights, for comparison
        result["argmax_accuracy"] = result["trajectory"][-1]
    epochs = f"{result['epochs']} epoch{'s' * (result['epochs'] != 1)}"
    print(f"    {variant} seed {seed}: {cell} -> {result['accuracy']} % ({epochs}, "
          f"search {result['search_s'] / 60:.1f} min, largest probability {result['top_probability']}; "
          f"by epoch: {result['trajectory']})", flush=True)
    return result


def summarise(results: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    summary = {}
    for variant in dict.fromkeys(r["variant"] for r in results):
        ok = [r for r in results if r["variant"] == variant and r.get("accuracy") is not None]
        acc = [r["accuracy"] for r in ok]
        summary[variant] = {
            "n": len(acc), "mean": round(statistics.fmean(acc), 3) if acc else None,   # 3 places: 93.497 is not 93.5
            "std": round(statistics.pstdev(acc), 3) if acc else None, "min": min(acc, default=None),
            "max": max(acc, default=None),
            "search_min": round(statistics.fmean(r["search_s"] for r in ok) / 60, 1) if ok else None}
        argmax = [r["argmax_accuracy"] for r in ok if r.get("argmax_accuracy") is not None]
        if argmax:   # the same supernets derived by their largest weights
            summary[variant]["argmax_mean"] = round(statistics.fmean(argmax), 3)
            summary[variant]["argmax_min"] = min(argmax)
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=sorted(SETTINGS), default="cpu")
    parser.add_argument("--variants", default="default", help=f"comma-separated: {', '.join(VARIANTS)}")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--table", type=Path, default=ROOT.parent / "shared" / "data" / "nb201-cifar10.csv")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "darts_nb201", help="run directories")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--label", default=None, help="run directories VARIANT-LABEL (e.g. for extra overrides)")
    parser.add_argument("--supernets-from", default=None, metavar="VARIANT",
                        help="start each run from that variant's trained supernet of the same seed (its "
                             f"{CHECKPOINT}, when there is one): compares derivations of the same supernets; search_s "
                             "still counts that supernet's training (its epochs' seconds) and the derivation")
    parser.add_argument("overrides", nargs="*", help="more overrides for every run, e.g. search.epochs=10")
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    if not args.table.is_file():
        parser.error(f"no table at {args.table} (--table)")
    args.accuracies = load_accuracies(args.table)
    args.work = args.work.resolve()
    seeds = [int(s) for s in args.seeds.split(",") if s]
    setting = " ".join(SETTINGS[args.device] + args.overrides)
    print(f"setting ({args.device}): {setting}")
    results = [run_one(v, s, args, args.overrides) for v in variants for s in seeds]
    summary = summarise(results)
    print("\n| variant | n | mean | std | min | max | search min/seed | argmax of the same supernets: mean / min "
          "| cells (seed: accuracy) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for variant, s in summary.items():
        cells = "; ".join(f"{r['seed']}: {r.get('accuracy')}" for r in results if r["variant"] == variant)
        argmax = f"{s['argmax_mean']} / {s['argmax_min']}" if "argmax_mean" in s else ""
        print(f"| {variant} | {s['n']} | {s['mean']} | {s['std']} | {s['min']} | {s['max']} | {s['search_min']} "
              f"| {argmax} | {cells} |")
    for variant, s in summary.items():   # the CPU goal, from the unrounded figures
        if s["n"] and args.device == "cpu":
            ok = [r for r in results if r["variant"] == variant and r.get("accuracy") is not None]
            met = (statistics.fmean(r["accuracy"] for r in ok) >= 93.5 and min(r["accuracy"] for r in ok) >= 93.0
                   and max(r["search_s"] for r in ok) <= 30 * 60)
            print(f"{variant}: CPU goal (mean >= 93.5, no seed < 93.0, <= 30 min a seed): {'met' if met else 'not'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"device": args.device, "setting": setting, "results": results,
                                         "summary": summary}, indent=2) + "\n")
    return 0 if all(r["status"] == "ok" for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
