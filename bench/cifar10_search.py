"""Search on CIFAR-10 against airbench: the search, the space's default with the same budget, and (with --runs) the
airbench anchors next to the networks found, all on one machine in one command.

    python bench/cifar10_search.py --device cpu --seeds 0,1,2              # +experiment=cifar10_airbench_cpu
    python bench/cifar10_search.py --device cuda --seeds 0 --search-seconds 240 --runs 5 \\
        --anchors airbench94,airbench95,airbench96 --time-limit 540         # the GPU session's run
    python bench/cifar10_search.py --device cpu --tiny --runs 2              # dry run of every step: NOT a measurement

Per seed:
  1. the search, as a user runs it: `python -m compiler +experiment=cifar10_airbench[_cpu] seed=S out_dir=WORK/seedS`
     (with --search-seconds: in rounds that resume the run with a larger search.budget until the time is used, then
     once more to write the report and best/, which is trained with the final budget and tested);
  2. the space's default genotype (airbench94's layout) trained by the same evaluator with the same final budget
     on the same data (`evaluator.final`, into WORK/seedS/default/): its test accuracy next to best/'s.
Then, with --runs N: the anchors (airbench94's layout with its recipe, then airbench95's, then airbench96's with
theirs) and the front's networks picked against the anchors' times, each trained N times (seeds 0..N-1) with the
same trainer, data (every training image: dataset.val_size=0) and timer, in rounds of one run each (--interleave,
the default: a drifting machine moves them all alike; the picks then use the anchors' first runs); mean and spread of
TTA test accuracy and training time, and whether a found network dominates an anchor. --time-limit stops adding
runs when the next one would not fit, and airbench96 (the longest) comes last.

Times: `train_time_s` is the trainer's measured training (whitening set-up + optimisation steps, CUDA-synchronised,
without evaluations and without the untimed warm-up). Writes WORK/results.json after every step.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from bench._util import run_compiler  # noqa: E402
from search.data import load_dataset  # noqa: E402
from search.data.loader import DeviceLoader  # noqa: E402
from search.tasks.search import build_space, evaluation_context  # noqa: E402
from search.training import seed_everything, train, trainer_config  # noqa: E402
from search.training.trainer import resolve_device  # noqa: E402

EXPERIMENTS = {"cpu": "cifar10_airbench_cpu", "cuda": "cifar10_airbench"}

# A dry run: a few images at 16x16, one step per training. Checks that every step runs; measures nothing.
TINY = ["search.budget=2", "dataset.image_size=[16,16]", "dataset.max_per_class=20", "dataset.max_test_per_class=5",
        "dataset.val_size=50", "evaluator.search_overrides.budget.steps=1", "evaluator.final_overrides.budget.steps=1",
        "evaluator.search_overrides.batch_size=50", "evaluator.final_overrides.batch_size=50",
        "trainer.whiten_stem.images=100", "trainer.eval_batch_size=100"]
TINY_RETRAIN = {"budget": {"steps": 1}, "batch_size": 50}


# airbench's recipes in the trainer's terms: lr = lr_per_1024 / (1024 * (1 + 1 / (1 - 0.85))) and
# weight_decay = wd_per_1024 * 1024 / lr_per_1024 (conf/trainer/airbench94.yaml derives airbench94's the same way).
def _recipe(epochs: float, lr_per_1024: float, wd_per_1024: float, **extra: Any) -> dict[str, Any]:
    return {"budget": {"epochs": epochs},
            "optimizer": {"lr": lr_per_1024 / (1024 * (1 + 1 / (1 - 0.85))),
                          "weight_decay": wd_per_1024 * 1024 / lr_per_1024}, **extra}


WIDE = {"width1": "128", "width2": "384"}
DEEP = {"convs1": "3", "convs2": "3", "convs3": "3"}
# name -> (decisions of examples/spaces/airbench.arch, model parameters, trainer overrides): the reference's
# lib_airbench9X.py hyper-parameters (airbench 0.1.8); each network's own recipe, as the reference trains it.
ANCHORS: dict[str, tuple[dict[str, str], dict[str, Any], dict[str, Any]]] = {
    "airbench94": ({}, {}, {}),                      # conf/trainer/airbench94.yaml as it is: _recipe(9.9, 11.5, 0.0153)
    "airbench95": ({**WIDE, "width3": "384"}, {}, _recipe(15.0, 10.0, 0.0153)),
    "airbench96": ({**WIDE, "width3": "512", **DEEP}, {"bn_momentum": 0.1},
                   _recipe(37.0, 9.0, 0.012, augment={"flip": "alternate", "translate": 4, "pad_mode": "reflect",
                                                      "cutout": 12})),
}
# Measured with the reference package on the JPEG copy on one H200 (shared/data/README.md): TTA accuracy, seconds.
README_FIGURES = {"airbench94": (0.9062, 1.93), "airbench95": (0.9177, 4.91), "airbench96": (0.9326, 20.3)}


def genotype_of(space: Any, choices: Mapping[str, str]) -> tuple[int, ...]:
    """The genotype with these options (by decision name and option text); every other decision at its first."""
    unknown = set(choices) - {d.name for d in space.decisions}
    if unknown:
        raise ValueError(f"the space has no decision(s) {sorted(unknown)}")
    return tuple(d.options.index(choices[d.name]) if d.name in choices else 0 for d in space.decisions)


def spread(values: Sequence[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def mean_sd(values: Sequence[float], scale: float = 1.0, digits: int = 2) -> str:
    if not values:
        return "-"
    return f"{scale * statistics.mean(values):.{digits}f} +- {scale * spread(values):.{digits}f}"


class Results:
    """results.json, rewritten after every step so a run stopped by a time limit leaves what it measured."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path, self.data = path, {**header, "seeds": [], "retrain": {}}

    def save(self) -> None:
        self.path.write_text(json.dumps(self.data, indent=2) + "\n")


# ---- 1. the search -----------------------------------------------------------------------------------------------
def history(out: Path) -> list[dict[str, Any]]:
    path = out / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run_search(seed: int, out: Path, args: argparse.Namespace, overrides: list[str]) -> dict[str, Any]:
    command = [f"+experiment={args.experiment}", f"seed={seed}", f"out_dir={out}",
               "search.progress=false", *overrides]
    log = out.parent / f"{out.name}.log"
    start = time.perf_counter()
    if args.search_seconds is None:
        run_compiler(command, log)
    else:  # rounds: each resumes the run with a larger budget, sized from the time per candidate so far
        command = [c for c in command if not c.startswith("search.budget=")]
        budget, rounds = args.round, 0
        while True:
            run_compiler([*command, f"search.budget={budget}", "task.export_best=false"], log)
            rounds += 1
            done, elapsed = len(history(out)), time.perf_counter() - start
            room = int(0.9 * (args.search_seconds - elapsed) / (elapsed / max(done, 1)))
            if done < budget or room < 1:
                break
            budget = done + room
        run_compiler([*command, f"search.budget={budget}"], log)  # nothing left to evaluate: report and best/
        print(f"  search in {rounds} round(s), budget {budget}", flush=True)
    wall = time.perf_counter() - start
    records = history(out)
    ok = [r for r in records if r["status"] == "ok"]
    best = json.loads((out / "best" / "metrics.json").read_text())
    summary = json.loads((out / "best" / "summary.json").read_text())["search"]
    return {"seed": seed, "out": str(out), "wall_s": wall, "evaluations": len(records), "ok": len(ok),
            "candidate_seconds": sum(r["seconds"] for r in records),
            "best_val_acc": max((r["metrics"]["accuracy"] for r in ok), default=None),
            "best": {"decisions": summary["decisions"], "genotype": summary["genotype"],
                     "search_metrics": {k: summary["search_metrics"].get(k) for k in ("accuracy", "train_time_s")},
                     "test_acc": best.get("test_acc"), "test_acc_tta": best.get("test_acc_tta"),
                     "train_time_s": best.get("train_time_s"), "status": best.get("status")},
            "front": [{"genotype": p["genotype"], "decisions": p["decisions"], "accuracy": p["metrics"]["accuracy"],
                       "train_time_s": p["metrics"]["train_time_s"]}
                      for p in json.loads((out / "pareto.json").read_text())]}


# ---- 2. the default with the same budget -------------------------------------------------------------------------
def train_default(out: Path, front: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The space's default genotype through the run's own evaluator: as a candidate (the search budget, scored on
    validation) and as best/ was trained (the final budget, tested), into OUT/default/."""
    context = evaluation_context(json.loads((out / "run.json").read_text())["config"])
    genotype = context.space.default_genotype
    candidate = context.evaluator(genotype, context.space)
    target = out / "default"
    context.space.compile(genotype).write(target)
    final = context.evaluator.final(genotype, context.space, target)
    row = {k: final.get(k) for k in ("status", "test_acc", "test_acc_tta", "train_time_s")}
    row["search"] = {k: candidate.get(k) for k in ("status", "accuracy", "train_time_s")}
    row["data_device"] = str(context.evaluator.data.train.images.device)  # cuda: kept there for every candidate
    # other front members that beat it in the search's own terms (the default itself, in the front with
    # search.include_default, differs from this run by timing noise)
    if candidate.get("status", "ok") == "ok":
        others = [p for p in front if tuple(p["genotype"]) != genotype]
        row["dominated_by"] = [p["decisions"] for p in others if beats(p, candidate)]
    return row


def beats(member: Mapping[str, Any], reference: Mapping[str, Any]) -> bool:
    """In the search's terms: at least the reference's validation accuracy in less training time."""
    return member["accuracy"] >= reference["accuracy"] and member["train_time_s"] < reference["train_time_s"]


# ---- 3. anchors and found networks, n runs each ------------------------------------------------------------------
class Retrainer:
    """Every contender on the same data (loaded once, kept on the device), trainer and timer."""

    def __init__(self, run_dir: Path, tiny: bool, deadline: float) -> None:
        config = OmegaConf.create(json.loads((run_dir / "run.json").read_text())["config"])
        config.dataset.val_size = 0                                  # train on every training image
        self.config, self.deadline = config, deadline
        trainer = OmegaConf.to_container(OmegaConf.merge(config.trainer, config.evaluator.final_overrides,
                                                         {"evaluate_test": True, "progress": False}))
        self.trainer = OmegaConf.merge(trainer, TINY_RETRAIN if tiny else {})
        self.device = resolve_device(str(self.trainer.device))
        data = load_dataset(config.dataset)
        self.data = data.to(self.device) if self.device.type == "cuda" else data
        loader = DeviceLoader(self.data.train, 8, self.device, self.data.mean, self.data.std)
        self.data_in_place = loader.images.data_ptr() == self.data.train.images.data_ptr()  # no copy per run
        self.spaces: dict[str, Any] = {}
        self.rate: float | None = None  # seconds per (MAC x training step), from the last run: to fit --time-limit

    def space(self, params: Mapping[str, Any]) -> Any:
        key = json.dumps(params, sort_keys=True)
        if key not in self.spaces:
            config = OmegaConf.merge(self.config, {"space": {"params": dict(params)}})
            self.spaces[key] = build_space(config, SimpleNamespace(data=self.data), validate=False)
        return self.spaces[key]

    def run(self, name: str, genotype: Sequence[int], params: Mapping[str, Any], recipe: Mapping[str, Any],
            runs: Sequence[int], done: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
        """Runs with these seeds; ``done``: this network's earlier runs (the time of the next is estimated from
        them). Stops at a failed run or when the next would pass the deadline."""
        space = self.space(params)
        compiled = space.compile(genotype)
        base = trainer_config(OmegaConf.to_container(OmegaConf.merge(self.trainer, recipe)))
        per_epoch = len(self.data.train) // min(base.batch_size, len(self.data.train))
        cost = compiled.summary["macs"] * (base.budget.steps or math.ceil(base.budget.epochs * per_epoch))
        rows: list[dict[str, Any]] = []
        for run in runs:
            earlier = [*done, *rows]
            expected = earlier[-1]["wall_s"] if earlier else (self.rate or 0.0) * cost
            if time.perf_counter() + expected > self.deadline:
                print(f"    [{name}] stopped after {len(earlier)} run(s): the next (about {expected:.0f} s) would "
                      "pass --time-limit", flush=True)
                break
            start = time.perf_counter()
            seed_everything(run)
            result = train(compiled.build(), self.data, dataclasses.replace(base, seed=run))
            m = result.metrics
            row = {"run": run, "status": result.status, "test_acc": m.get("test_acc"),
                   "test_acc_tta": m.get("test_acc_tta", m.get("test_acc")), "train_time_s": m.get("train_time_s"),
                   "tta_time_s": m.get("test_tta_time_s", m.get("test_time_s")), "wall_s": time.perf_counter() - start}
            rows.append(row)
            self.rate = row["wall_s"] / cost
            if not result.ok:
                print(f"    [{name}] run {run}: {result.message}", flush=True)
                break
            print(f"    [{name}] run {run}: TTA acc {100 * row['test_acc_tta']:.2f}% (plain {100 * row['test_acc']:.2f}"
                  f"%)  train {row['train_time_s']:.3f} s  (+ TTA eval {row['tta_time_s']:.3f} s)", flush=True)
        return rows


def stats(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rows if r["status"] == "ok"]
    acc, times = [r["test_acc_tta"] for r in ok], [r["train_time_s"] for r in ok]
    return {"n": len(ok), "acc_mean": statistics.mean(acc) if acc else None, "acc_sd": spread(acc),
            "time_mean": statistics.mean(times) if times else None, "time_sd": spread(times)}


def time_scale(config: Any, search_images: int, train_images: int) -> float:
    """Search training time -> retraining time: the images (the retraining adds the validation split) times the
    budgets (the CPU experiment searches with 4 epochs and trains best/ with 8; the GPU one with 9.9 both)."""
    search, final = config.evaluator.search_overrides.budget, config.evaluator.final_overrides.budget
    if search.get("steps") and final.get("steps"):  # steps do not grow with the images
        return float(final.steps) / float(search.steps)
    epochs = float(final.epochs) / float(search.epochs) if search.get("epochs") and final.get("epochs") else 1.0
    return epochs * train_images / max(search_images, 1)


def pick_found(front: Sequence[Mapping[str, Any]], anchor_times: Mapping[str, float], scale: float,
               most: int, default: Mapping[str, Any] | None = None,
               labels: Sequence[str] | None = None) -> list[tuple[str, Mapping[str, Any]]]:
    """Front members to confirm: for each anchor measured, the most accurate one whose search training time, times
    ``scale`` (``time_scale``), is below the anchor's (``under_ANCHOR``); the most accurate of those that beat the
    space's default in the search itself (``beats_default``: at least its validation accuracy in less training time;
    ``default`` is its search record); then the most accurate of all (``most_accurate``). Distinct, at most ``most``;
    ``labels``: only those picks."""
    picks: list[tuple[str, Mapping[str, Any]]] = []
    wanted: list[tuple[str, Sequence[Mapping[str, Any]]]] = [
        (f"under_{a}", [p for p in front if p["train_time_s"] * scale < t]) for a, t in anchor_times.items()]
    if default and default.get("accuracy") is not None and default.get("train_time_s") is not None:
        wanted.append(("beats_default", [p for p in front if beats(p, default)]))
    wanted.append(("most_accurate", list(front)))
    for label, members in wanted:
        if members and (labels is None or label in labels):
            pick = max(members, key=lambda p: p["accuracy"])
            if all(pick["genotype"] != g["genotype"] for _, g in picks):
                picks.append((label, pick))
    return picks[:most]


def retrain(args: argparse.Namespace, search: Mapping[str, Any], results: Results, deadline: float) -> None:
    run_dir = Path(search["out"])
    retrainer = Retrainer(run_dir, args.tiny, deadline)
    print(f"\n3. anchors and found networks, {args.runs} runs each, on {retrainer.data.describe()} "
          f"(device {retrainer.device}; data kept on the device: {retrainer.data_in_place})", flush=True)
    out = results.data["retrain"]
    out.update({"data": retrainer.data.describe(), "data_in_place": retrainer.data_in_place, "contenders": {}})
    contenders = out["contenders"]
    # --interleave: every network's first run, then round after round one run of each, so that a machine that
    # drifts (a host's load, a GPU's clocks) moves all of them alike; the picks are made from the anchors' first runs
    first = [0] if args.interleave else list(range(args.runs))
    later = range(1, args.runs) if args.interleave else range(0)
    networks: dict[str, tuple[Sequence[int], Mapping[str, Any], Mapping[str, Any]]] = {}

    def measure(name: str, runs: Sequence[int]) -> None:
        genotype, params, recipe = networks[name]
        entry = contenders[name]
        entry["runs"] = [*entry["runs"], *retrainer.run(name, genotype, params, recipe, runs, entry["runs"])]
        entry.update(stats(entry["runs"]))
        results.save()

    def anchor(name: str, runs: Sequence[int]) -> None:
        choices, params, recipe = ANCHORS[name]
        print(f"  {name}: {choices or 'the default genotype'}, {params or ''} recipe {recipe}", flush=True)
        genotype = genotype_of(retrainer.space(params), choices)
        networks[name] = (genotype, params, recipe)
        contenders[name] = {"decisions": retrainer.space(params).describe(genotype), "params": params,
                            "recipe": recipe, "runs": []}
        measure(name, runs)

    for name in args.anchors:
        if name != "airbench96":  # the longest comes last, when time allows
            anchor(name, first)
    times = {a: c["time_mean"] for a, c in contenders.items() if c.get("time_mean") is not None}
    search_config = OmegaConf.create(json.loads((run_dir / "run.json").read_text())["config"])
    scale = time_scale(search_config, len(load_dataset(search_config.dataset).train), len(retrainer.data.train))
    default = retrainer.space({}).default_genotype   # airbench94 itself (search.include_default) is no find
    front = [p for p in search["front"] if tuple(p["genotype"]) != default]
    # the default's record in the search itself (search.include_default), else step 2's measurement of it
    in_search = [r["metrics"] for r in history(run_dir) if tuple(r["genotype"]) == default and r["status"] == "ok"]
    default_record = in_search[0] if in_search else search["default"].get("search")
    picks = args.picks.split(",") if args.picks else None
    for label, pick in pick_found(front, times, scale, args.confirm, default_record, picks):
        key = f"found:{label}"
        print(f"  {key}: {pick['decisions']}", flush=True)
        networks[key] = (pick["genotype"], {}, {})
        contenders[key] = {"decisions": pick["decisions"], "genotype": pick["genotype"],
                           "search": {"accuracy": pick["accuracy"], "train_time_s": pick["train_time_s"]}, "runs": []}
        measure(key, first)
    for run in later:
        print(f"  round {run + 1} of {args.runs}: one run of each", flush=True)
        for name, entry in contenders.items():   # a network whose last run failed or did not fit is done
            if len(entry["runs"]) == run and all(r["status"] == "ok" for r in entry["runs"]):
                measure(name, [run])
    if "airbench96" in args.anchors:
        anchor("airbench96", list(range(args.runs)))


def dominance(contenders: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = []
    for name, c in contenders.items():
        if not name.startswith("found:") or c.get("acc_mean") is None:
            continue
        for anchor in ANCHORS:
            a = contenders.get(anchor)
            if not a or a.get("acc_mean") is None:
                continue
            wins = c["acc_mean"] >= a["acc_mean"] and c["time_mean"] < a["time_mean"]
            lines.append(f"  {name} vs {anchor}: acc {100 * c['acc_mean']:.2f}% vs {100 * a['acc_mean']:.2f}%, "
                         f"train {c['time_mean']:.3f} s vs {a['time_mean']:.3f} s: "
                         f"{'DOMINATES' if wins else 'does not dominate'}")
    return lines


def summarise_seeds(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Print mean +- sd over seeds of the search and of best/ against the default; return the values per seed."""
    def values(get: Any) -> list[float]:
        return [v for v in map(get, rows) if v is not None]

    print(f"\nsummary over {len(rows)} seed(s) (mean +- sd):")
    print(f"  search wall time          {mean_sd(values(lambda r: r['wall_s']), digits=1)} s "
          f"({mean_sd(values(lambda r: r['evaluations']), digits=1)} candidates)")
    print(f"  validation acc (search)   best {mean_sd(values(lambda r: r['best_val_acc']), 100)} %   default "
          f"{mean_sd(values(lambda r: r['default']['search'].get('accuracy')), 100)} %")
    summary: dict[str, Any] = {"wall_s": values(lambda r: r["wall_s"])}
    for label, key, scale in (("test acc (final)", "test_acc", 100.0), ("TTA test acc (final)", "test_acc_tta", 100.0),
                              ("training s (final)", "train_time_s", 1.0)):
        best, default = values(lambda r: r["best"].get(key)), values(lambda r: r["default"].get(key))
        print(f"  {label:<24}  best/ {mean_sd(best, scale)}   default {mean_sd(default, scale)}")
        summary[key] = {"best": best, "default": default}
    return summary


# ---- the command -------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--experiment", default=None, help="default: cifar10_airbench_cpu (cpu), cifar10_airbench")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "cifar10_search")
    parser.add_argument("--search-seconds", type=float, default=None,
                        help="search in rounds until this much time is used (default: the experiment's budget)")
    parser.add_argument("--round", type=int, default=8, help="candidates of the first round (--search-seconds)")
    parser.add_argument("--workers", type=int, default=None, help="search.workers (default: the GPUs, or 1)")
    parser.add_argument("--runs", type=int, default=0, help="runs per anchor and found network (0: no retraining)")
    parser.add_argument("--anchors", default="airbench94,airbench95,airbench96")
    parser.add_argument("--confirm", type=int, default=3, help="found networks retrained at most")
    parser.add_argument("--picks", default=None, help="only these picks, comma-separated: under_ANCHOR, "
                        "beats_default, most_accurate (default: all, in that order, up to --confirm)")
    parser.add_argument("--time-limit", type=float, default=None, help="seconds: no retraining run starts after")
    parser.add_argument("--interleave", action=argparse.BooleanOptionalAction, default=True,
                        help="retrain in rounds, one run of each network per round (default), instead of each "
                             "network's runs one after the other; airbench96 always comes last, its runs together")
    parser.add_argument("--tiny", action="store_true", help="a dry run of every step (a few images, one step)")
    parser.add_argument("overrides", nargs="*", help="more overrides for the search, e.g. search=evolution")
    args = parser.parse_intermixed_args(argv)   # overrides before and after the options
    args.experiment = args.experiment or EXPERIMENTS[args.device]
    args.anchors = [a for a in args.anchors.split(",") if a]
    for name in args.anchors:
        if name not in ANCHORS:
            parser.error(f"unknown anchor {name!r}: one of {', '.join(ANCHORS)}")
    known = [f"under_{a}" for a in args.anchors] + ["beats_default", "most_accurate"]
    for label in args.picks.split(",") if args.picks else []:
        if label not in known:
            parser.error(f"unknown pick {label!r}: one of {', '.join(known)}")
    gpus = torch.cuda.device_count() if args.device == "cuda" else 0
    workers = args.workers or max(1, gpus)
    overrides = [f"trainer.device={args.device}", f"search.workers={workers}", *(TINY if args.tiny else []),
                 *args.overrides]
    if args.device == "cpu":
        overrides.append("trainer.precision=fp32")
    seeds = [int(s) for s in args.seeds.split(",")]
    start = time.perf_counter()
    deadline = start + args.time_limit if args.time_limit else float("inf")
    args.work.mkdir(parents=True, exist_ok=True)
    machine = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu ({os.cpu_count()} cores)"
    results = Results(args.work / "results.json", {
        "command": sys.argv, "device": machine, "torch": torch.__version__, "experiment": args.experiment,
        "overrides": overrides, "tiny": args.tiny})
    print(f"+experiment={args.experiment} on {machine}, seeds {seeds}, workers {workers}"
          f"{'  [TINY: a dry run, not a measurement]' if args.tiny else ''}", flush=True)

    for seed in seeds:
        out = args.work / f"seed{seed}"
        print(f"\nseed {seed}: 1. search -> {out}", flush=True)
        row = run_search(seed, out, args, overrides)
        print(f"  {row['evaluations']} candidates ({row['ok']} ok) in {row['wall_s']:.1f} s; best val acc "
              f"{100 * (row['best_val_acc'] or 0):.2f}%; best/ {row['best']['decisions']}: test acc "
              f"{100 * (row['best']['test_acc'] or 0):.2f}% (TTA {100 * (row['best']['test_acc_tta'] or 0):.2f}%), "
              f"final training {row['best']['train_time_s']} s", flush=True)
        print(f"seed {seed}: 2. the space's default (airbench94 layout), same final budget", flush=True)
        row["default"] = train_default(out, row["front"])
        d, s = row["default"], row["default"]["search"]
        print(f"  default as a candidate: val acc {100 * (s['accuracy'] or 0):.2f}% in {s['train_time_s']} s "
              f"({len(d.get('dominated_by', []))} front member(s) dominate it); final: test acc "
              f"{100 * (d['test_acc'] or 0):.2f}% (TTA {100 * (d['test_acc_tta'] or 0):.2f}%), training "
              f"{d['train_time_s']} s", flush=True)
        results.data["seeds"].append(row)
        results.save()

    results.data["summary"] = summarise_seeds(results.data["seeds"])
    results.save()

    if args.runs > 0:
        retrain(args, results.data["seeds"][0], results, deadline)
        contenders = results.data["retrain"]["contenders"]
        print("\nretraining summary (TTA test accuracy and train_time_s, mean +- sd over n runs; seeds 0..n-1):")
        for name, c in contenders.items():
            ok = [r for r in c["runs"] if r["status"] == "ok"]
            line = (f"  {name:<28} n={c['n']}  acc {mean_sd([r['test_acc_tta'] for r in ok], 100)} %  "
                    f"train {mean_sd([r['train_time_s'] for r in ok], digits=3)} s")
            if name in README_FIGURES and args.device == "cuda":
                acc, secs = README_FIGURES[name]
                line += f"   (reference package, README: {100 * acc:.2f} %, {secs} s on an H200)"
            print(line)
        lines = dominance(contenders)
        results.data["retrain"]["dominance"] = lines
        print("\n".join(lines))
        results.save()
    print(f"\nwrote {results.path} ({time.perf_counter() - start:.1f} s in all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
