"""`python -m compiler +search=darts`: differentiable architecture search (Liu et al., 2019) over a space.

1. The space (re-specialised to the data) is lowered to a supernet (compiler/backends/supernet.py); its size and
   a memory estimate are printed, and a configured memory limit is enforced before any training.
2. Weights and architecture logits are trained in alternation (bilevel.py), checkpointed every epoch.
3. Each decision takes its strongest option (derive.py); a collapse toward parameter-free ops is warned about.
4. The derived architecture is trained from scratch by the configured evaluator (its ``final``) and the run
   writes what every search writes (search/report.py: history.jsonl, pareto.json, report.md, best/), plus
   supernet.py, alphas.json and alphas.png.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from compiler.supernet import build_supernet
from compiler.errors import ArchError, Span
from compiler.ir.ops import load_op_modules
from compiler.space import Space
from search.tasks.common import export_formats, output_dir
from search.darts.bilevel import BilevelSearch
from search.darts.config import DartsConfig, darts_config, uses_edge_norm
from search.darts.cost import build_penalty
from search.darts.derive import collapse, collapse_warning, derive, edge_strengths, keep_strongest
from search.darts.memory import MemoryEstimate, check_memory, estimate
from search.darts.report import report_notes, write_alpha_history
from search.evaluators.cost import CostEvaluator
from search.journal import Journal
from search.report import write_report
from search.run_config import start_run
from search.schema import build, check_run_config, objective_set
from search.tasks.search import build_space, export_trained
from search.training import resolve_device, trainer_config
from search.training.checks import trainer_with_overrides


def _identity(space: Space, fixed: Mapping[int, int], settings: DartsConfig, seed: int) -> dict[str, Any]:
    """What a checkpoint must match to be continued (not: display, device, threads, the memory check)."""
    config = {k: v for k, v in dataclasses.asdict(settings).items()
              if k not in ("progress", "memory_limit_mb", "device", "cpu_threads", "retrain", "train_derived",
                           "derived_params")}
    return {"space": space.name, "decisions": [[d.name, list(d.options)] for d in space.decisions],
            "fixed": {space.decisions[p].name: o for p, o in sorted(fixed.items())}, "seed": seed,
            "config": json.loads(json.dumps(config))}


def _epoch_line(record: Mapping[str, Any], epochs: int, metric: str) -> str:
    parts = [f"epoch {record['epoch']}/{epochs}", f"weights: loss {record['train_loss']:.3f} "
             f"acc {100 * record['train_acc']:.1f} %"]
    if record.get("arch_loss") is not None:
        parts.append(f"arch: loss {record['arch_loss']:.3f} acc {100 * record['arch_acc']:.1f} %")
    parts.append(f"supernet val acc {100 * record['val_acc']:.1f} %")
    if "expected_cost" in record:
        parts.append(f"E[{metric}] {record['expected_cost']:,.4g}")
    return " | ".join(parts) + f" ({record['seconds']:.1f} s)"


def _training_evaluator(cfg: DictConfig, settings: DartsConfig) -> Any:
    """The configured evaluator, which must train (it holds the data and trains the derived network), with
    DARTS' retraining settings on top of its final ones (checked before any work)."""
    evaluator = build(cfg.evaluator, "evaluator")
    if evaluator.data is None:
        raise ArchError("DARTS trains a supernet on the data set and the derived network from scratch, which "
                        f"needs a training evaluator, not {type(evaluator).__name__}", Span("evaluator", 0, 0),
                        hint="use evaluator=train (the default) with dataset=NAME")
    if settings.retrain:
        trainer_with_overrides(evaluator.trainer, settings.retrain, "search.retrain")
        merged = OmegaConf.merge(OmegaConf.create(dict(evaluator.final_overrides)), settings.retrain)
        evaluator.final_overrides = OmegaConf.to_container(merged, resolve=True)
        trainer_config(OmegaConf.merge(OmegaConf.create(dict(evaluator.trainer)), evaluator.final_overrides))
    return evaluator


class _Stopped(Exception):
    """The search cannot go on for a reason the user can act on: one message, an exit status, no traceback."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _search(search: BilevelSearch, settings: DartsConfig, memory: MemoryEstimate) -> list[dict[str, Any]]:
    try:
        return search.run(on_epoch=lambda r: print(_epoch_line(r, settings.epochs, settings.cost.metric))
                          if settings.progress else None)
    except FloatingPointError as err:
        raise _Stopped(f"the supernet's training diverged: {err}", 3) from err
    except torch.OutOfMemoryError as err:
        raise _Stopped(f"out of memory while training the supernet (estimated {memory.total_mb:,.0f} MiB at batch "
                       f"{memory.batch_size}; {str(err).splitlines()[0][:120]}): lower search.batch_size, shrink "
                       "the space (space.params) or fix decisions with search.fixed", 4) from err


def _train_derived(genotype: Sequence[int], space: Space, evaluator: Any, best: Path, extra: Mapping[str, Any],
                   profile: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train the derived network from scratch (best/: weights.pt, metrics.json); its record's metrics."""
    space.compile(genotype).write(best)              # the network's files, whatever its training gives
    final = evaluator.final(genotype, space, best)
    metrics: dict[str, Any] = {**CostEvaluator()(genotype, space), "status": final.get("status", "ok"),
                               "accuracy": final.get("val_acc"), "test_acc": final.get("test_acc"), **extra}
    if profile and profile.get("_target_"):
        metrics.update(build(profile, "profile")(space.compile(genotype)))
    return final, metrics


def _variant(settings: DartsConfig) -> str:
    """The method in a few words, for the log."""
    parts = [{"softmax": "softmax mixing", "dirichlet": "Dirichlet mixing (DrNAS)",
              "gumbel": "one Gumbel-sampled path per step (GDAS)"}[settings.relaxation]]
    if settings.beta_decay.weight:
        parts.append(f"beta-decay {settings.beta_decay.weight:g}")
    if settings.partial_channels > 1:
        parts.append(f"1/{settings.partial_channels} of the channels per edge (PC-DARTS)")
    if uses_edge_norm(settings):
        parts.append("edge normalisation")
    return ", ".join(parts)


def _derived_space(cfg: DictConfig, evaluator: Any, space: Space, params: Mapping[str, Any]) -> Space:
    """The space at the derived network's size: ``search.derived_params`` over ``space.params`` (DARTS searches
    with 8 cells of 16 channels and trains the derived cell in 20 of 36). A space's decisions are its choices as
    written, whatever the parameters, so the derived genotype applies to it."""
    if not params:
        return space
    return build_space(OmegaConf.merge(cfg, {"space": {"params": dict(params)}}), evaluator, validate=False)


def _derived_only(genotype: Sequence[int], space: Space, supernet: Any, history: Sequence[Mapping[str, Any]],
                  out: Path, search_seconds: float) -> int:
    """search.train_derived=false: the derived network's files (best/: arch.arch, model.py) and a history.jsonl
    record without training metrics; for benchmarks that score the derived cell elsewhere (a table)."""
    space.compile(genotype).write(out / "best")
    journal = Journal.of_run(out)
    journal.path.unlink(missing_ok=True)  # one record: the derived architecture of this (possibly resumed) search
    journal.add(0, genotype, space.describe(genotype), space.compile(genotype).arch,
                {**CostEvaluator()(genotype, space), "status": "derived", "supernet_val_acc": history[-1]["val_acc"],
                 "search_seconds": round(search_seconds, 3)}, round(search_seconds, 4))
    print(f"derived architecture written to {out / 'best'} (not trained: search.train_derived=false); "
          f"search {search_seconds:.1f} s")
    return 0


def darts_task(cfg: DictConfig) -> int:
    check_run_config(cfg, "objective", "profile", "space", "evaluator")
    load_op_modules(cfg.get("ops") or [])
    formats = export_formats(cfg)
    settings = darts_config(cfg.search)
    out = output_dir(cfg)
    start_run(out, cfg)  # a resume with another configuration stops here; records run.json and config.yaml
    seed = int(cfg.seed)
    objectives = objective_set(cfg.objective)
    if len(objectives.objectives) > 1:
        raise ArchError(f"DARTS descends one loss and cannot search several objectives ({', '.join(objectives.names)})",
                        Span("objective", 0, 0), hint="use objective=accuracy and trade accuracy for cost with "
                        "search.cost.weight (macs, params or latency), or search several objectives with "
                        "+search=nsga2 (or evolution, local, rl, optuna_tpe, random)")
    evaluator = _training_evaluator(cfg, settings)
    space = build_space(cfg, evaluator, validate=False)  # the supernet holds, and so checks, every option
    supernet = build_supernet(space, settings.fixed, settings.unrelaxed, settings.partial_channels,
                              uses_edge_norm(settings), settings.option_affine)
    if not supernet.relaxed:
        raise ArchError(f"the space '{space.name}' has no layer or input decision left to relax", space.module.span,
                        hint="remove decisions from search.fixed, or search this space with +search=evolution")
    for warning in supernet.warnings:
        print(warning)
    memory = estimate(supernet, settings.batch_size, settings.order, one_path=settings.relaxation == "gumbel")
    print(f"supernet: {memory.line()}")
    check_memory(memory, settings.memory_limit_mb, resolve_device(settings.device))
    penalty = build_penalty(supernet, settings.cost)

    (out / "supernet.py").write_text(supernet.source)
    print(f"searching {space.name} with DARTS: {len(supernet.relaxed)} relaxed decisions "
          f"({sum(r.sites for r in supernet.relaxed)} mixed choices), {len(supernet.fixed)} fixed; {settings.epochs} "
          f"epochs, order {settings.order}, {_variant(settings)}, {evaluator.data.describe()}; writing to {out}")
    start = time.perf_counter()
    search = BilevelSearch(supernet, evaluator.data, settings, seed, penalty, out / "darts_state.pt",
                           _identity(space, supernet.fixed, settings, seed))
    try:
        history = _search(search, settings, memory)
    except _Stopped as stop:
        print(stop)
        return stop.status
    search_seconds = sum(h["seconds"] for h in history)
    write_alpha_history(supernet, history, out)

    probabilities = history[-1]["softmax"]
    op_choices = derive(supernet.relaxed, probabilities, settings.derive.exclude_zero)
    choices = op_choices
    if settings.derive.top_inputs is not None:
        strengths = edge_strengths(supernet.relaxed, probabilities, supernet.edge_groups, history[-1].get("edges"))
        choices = keep_strongest(supernet.relaxed, strengths, op_choices, supernet.edge_groups,
                                 settings.derive.top_inputs)
    genotype = supernet.genotype(choices)
    # collapse is about the ops the edges chose, not about edges dropped by top_inputs (they derive `zero`)
    check = collapse(supernet.relaxed, probabilities, op_choices, settings.derive.collapse_threshold)
    warnings = [collapse_warning(supernet.relaxed, op_choices, check)] if check.collapsed else []
    for warning in warnings:
        print(warning)
    print("derived: " + ", ".join(f"{k}={v}" for k, v in space.describe(genotype).items()))
    space = _derived_space(cfg, evaluator, space, settings.derived_params)  # the network's own size from here on
    if not settings.train_derived:
        return _derived_only(genotype, space, supernet, history, out, search_seconds)

    trained_at = time.perf_counter()
    final, metrics = _train_derived(genotype, space, evaluator, out / "best", {
        "supernet_val_acc": history[-1]["val_acc"], "parameter_free_share": check.share}, cfg.get("profile"))
    journal = Journal.of_run(out)
    journal.path.unlink(missing_ok=True)  # one record: the derived architecture of this (possibly resumed) search
    record = journal.add(0, genotype, space.describe(genotype), space.compile(genotype).arch, metrics,
                         round(search_seconds + time.perf_counter() - trained_at, 4))  # search + training
    export_trained(space.compile(genotype), out / "best", formats, space.name, bool(cfg.get("debug")))
    notes = report_notes(supernet, history, choices, memory.line(), warnings, search_seconds, settings.cost.metric,
                         _variant(settings))
    write_report([record], space, objectives, out, final=final, best_exported=True, notes=notes,
                 export_formats=formats)
    if final.get("status") != "ok":
        print(f"the derived architecture failed to train: {final.get('message')}; see {out / 'best/metrics.json'}")
        return 1
    print(f"derived architecture trained from scratch: val_acc={final.get('val_acc'):.4g}, "
          f"test_acc={final.get('test_acc'):.4g}, params={metrics['params']:,}; report: {out / 'report.md'}; "
          f"best: {out / 'best'} ({time.perf_counter() - start:.1f} s)")
    return 0
