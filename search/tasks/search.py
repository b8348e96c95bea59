"""`python -m compiler +search=NAME`: build the space, strategy and evaluator from the config, run the loop, then
train and export the best architecture (best/) and write the report. Every strategy runs here, DARTS too.

The steps, in order: the config is checked (and every objective is a metric some part of the run reports); a
one-shot strategy (DARTS) runs its search phase (a supernet, resumable from its own checkpoint) and derives its
candidates; the loop evaluates the candidates (history.jsonl, checkpoint.json); the best record is chosen on the
Pareto front; the evaluator trains it for deployment (``final``) into best/ with the exports asked for;
``write_report`` then only reads those results (and the strategy's notes) and writes pareto.json, report.md and the
plots. A sampling strategy may first be seeded with a proxy-ranked pool (``search.warmup.pool``:
warmup.json/.jsonl), and a mutating one may have its mutations screened by the proxy (``search.warmup.moves``:
screen.json/.jsonl). Exit status: 0; 1 when no candidate succeeded or the final training failed; 2 for a mistake
in the config or the run directory; 3 / 4 when a one-shot search phase diverged / ran out of memory.
"""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from compiler.api import CompileResult, read_source
from compiler.config_values import ConfigError, check_value
from compiler.ir.ops import load_op_modules
from compiler.space import Space, load_space_file
from search.data import load_dataset
from search.evaluators.base import Evaluator, Measurement, Unevaluated
from search.tasks.common import compile_options, export_formats, output_dir, write_exports
from search.loop import SearchLoop
from search.objectives import ObjectiveSet
from search.parallel import Context, reported_metrics, visible_gpus
from search.report import best_record, headline_metrics, write_report
from search.ray_config import require_ray
from search.run_config import start_run
from search.schema import (SearchConfig, WarmupConfig, build, check_run_config, objective_set, one_shot_strategy,
                           refusals_named, search_config)
from search.strategies.one_shot import OneShotStrategy, SearchStopped
from search.structured import plain
from search.training.specialise import data_parameters, model_parameters
from search.warmup import Warmup

log = logging.getLogger("search")


def build_space(cfg: DictConfig, evaluator: Evaluator, validate: bool = True) -> Space:
    """The space, re-specialised to the evaluator's data when it trains: the data's input shape, and the model
    parameters `num_classes` / `in_channels` / `size` where the space declares them (as `task=train` does).
    ``validate``: compile every option first (a supernet, which holds every option, checks them itself).
    The compile options (limits, passes, debug) are the config's; the input shape is the data's, else the file's."""
    given = cfg.space.get("params")
    # conf/space/ declares the file's parameters (so `space.params.channels=8` works); null: the file's default
    params: dict[str, Any] = {k: v for k, v in (plain(given) or {}).items() if v is not None}
    input_shape = None
    options = compile_options(cfg)
    data = evaluator.data  # evaluators that train hold their DataSplits
    if data is not None:
        input_shape = tuple(data.input_shape)
        declared = model_parameters(read_source(cfg.space.arch, options.limits), str(cfg.space.arch), options.limits)
        params = {**data_parameters(declared, data), **params}
    space = load_space_file(cfg.space.arch, options=replace(options, input_shape=input_shape), **params)
    if validate:
        space.validate(samples=4)  # a space whose options cannot all have consistent shapes stops here, located
    return space


WORKER_KEYS = ("ops", "objective", "evaluator", "space", "profile", "input_shape", "debug", "limits", "passes")
# what a worker needs of the config (its compile options, to build the space when it is not sent one)


def evaluation_parts(cfg: DictConfig) -> tuple[ObjectiveSet, Evaluator, list[Measurement]]:
    """Objectives, evaluator and measurements (``profile``), built from the config (op modules loaded first)."""
    load_op_modules(cfg.get("ops") or [])
    objectives = objective_set(cfg.objective)
    evaluator = build(cfg.evaluator, "evaluator")
    profile = cfg.get("profile")
    measurements = [build(profile, "profile")] if profile and profile.get("_target_") else []
    return objectives, evaluator, measurements


def evaluation_context(cfg: DictConfig | dict[str, Any], validate: bool = False, space: Space | None = None,
                       run_dir: Path | None = None) -> Context:
    """Space, evaluator, objectives and measurements, built from the config: by the main process and, from a
    resolved copy of the config (``worker_config``), by every parallel worker, the same way. A worker receives the
    main process's ``space`` (pickled; its ops are looked up once the op modules are imported here) and its run
    directory, where the evaluator reads back what the main process prepared (``Evaluator.prepare``)."""
    cfg = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg)
    objectives, evaluator, measurements = evaluation_parts(cfg)
    space = space if space is not None else build_space(cfg, evaluator, validate=validate)
    if run_dir is not None:
        evaluator.prepare(space, run_dir)
    return Context(space, evaluator, objectives, measurements)


def build_warmup(cfg: DictConfig, config: WarmupConfig, evaluator: Evaluator, space: Space) -> Warmup | None:
    """``search.warmup``, checked against the space: None when ``pool`` is 0 and ``moves`` 1. The proxies score the
    evaluator's data set when it has one (the space is specialised to it), else the ``dataset`` group's."""
    if config.pool == 0 and config.moves == 1:
        return None
    data = evaluator.data
    warmup = Warmup.of(config, lambda: data if data is not None else load_dataset(cfg.dataset), int(cfg.seed))
    warmup.check_space(space)
    return warmup


def worker_config(cfg: DictConfig) -> dict[str, Any]:
    """The parts of the config a worker needs, resolved here (interpolations such as ${hydra:...} only resolve
    inside the Hydra app) and plain, so that it pickles."""
    return {key: OmegaConf.to_container(cfg[key], resolve=True) if isinstance(cfg.get(key), DictConfig | ListConfig)
            else cfg.get(key) for key in WORKER_KEYS}


def profile_choice(cfg: DictConfig) -> str:
    """The ``profile=NAME`` the user chose (Hydra's record of it; else the profile's device, as cpu.yaml is named)."""
    from hydra.core.hydra_config import HydraConfig
    if HydraConfig.initialized():
        return str(HydraConfig.get().runtime.choices.get("profile"))
    return str(cfg.profile.get("device", "?"))


def check_parallel(cfg: DictConfig, workers: int, evaluator: Evaluator, measurements: Sequence[Measurement]) -> None:
    """Several workers train side by side: refuse them when a figure is timed while they do."""
    if workers == 1:
        return
    hint = ("use search.workers=1, or profile=predictor with profile.measure_missing=false (a table built "
            "beforehand), or profile=none")
    if any(m.measures_time for m in measurements):
        raise ConfigError("search.workers", f"search.workers={workers} with profile={profile_choice(cfg)}: latency "
                          "would be timed while other workers train on the same machine", hint=hint)
    if evaluator.measures_time:
        raise ConfigError("search.workers", f"search.workers={workers} with {type(evaluator).__name__}: it times "
                          "candidates, which other workers would slow down on the same machine",
                          hint="use search.workers=1")


def export_best(record: Mapping[str, Any], space: Space, evaluator: Evaluator, out: Path,
                formats: Sequence[str] = (), library_logs: bool = False) -> dict[str, Any]:
    """best/: canonical .arch, standalone model.py (+ profile.py), summary.json; the evaluator's final training of
    it (weights.pt, metrics.json) when it can train; then the deployment exports asked for (``export=[onnx,...]``),
    with the trained weights when there are some. Returns the final training's metrics ({}: none)."""
    result = space.compile(record["genotype"])
    result.write(out)
    final = evaluator.final(record["genotype"], space, out) or {}
    export_trained(result, out, formats, space.name, library_logs)
    return dict(final)


def export_trained(compiled: CompileResult, out: Path, formats: Sequence[str], where: str,
                   library_logs: bool = False) -> None:
    """The deployment exports of the model in ``out`` (``export=[onnx,...]``), with its trained weights.pt when
    there is one (else freshly initialised weights)."""
    if not formats:
        return
    model = compiled.build()
    if (out / "weights.pt").exists():
        model.load_state_dict(torch.load(out / "weights.pt", weights_only=True))
    write_exports(compiled, model, out, list(formats), where, library_logs=library_logs)


def candidate_space(cfg: DictConfig, evaluator: Evaluator, space: Space, params: Mapping[str, Any]) -> Space:
    """The space at the size a one-shot strategy's candidates are evaluated and exported at: ``params`` over
    ``space.params`` (DARTS searches with 8 cells of 16 channels and trains the derived cell in 20 of 36). A space's
    decisions are its choices as written, whatever the parameters, so the derived genotypes apply to it."""
    if not params:
        return space
    return build_space(OmegaConf.merge(cfg, {"space": {"params": dict(params)}}), evaluator, validate=False)


def sampling_loop(cfg: DictConfig, settings: SearchConfig, objectives: ObjectiveSet, evaluator: Evaluator,
                  measurements: Sequence[Measurement], out: Path) -> SearchLoop:
    """The loop of a strategy that samples the space (``search.strategy`` with its own options)."""
    workers = int(cfg.search.workers)
    check_parallel(cfg, workers, evaluator, measurements)
    objectives.check_reported(reported_metrics(evaluator, measurements))  # not a search that nothing can score
    space = build_space(cfg, evaluator, validate=True)
    # _partial_: Hydra would try to turn the space object into config if it were passed to instantiate.
    make_strategy = build(cfg.search.strategy, "search.strategy", _partial_=True)
    with refusals_named("search.strategy"):
        strategy = make_strategy(space=space, seed=int(cfg.seed), objectives=objectives)
    if settings.warmup.moves > 1 and not strategy.screens:   # before the warm start loads any data
        raise ConfigError("search.warmup.moves", f"{cfg.search.name} ({type(strategy).__name__}) proposes no "
                          f"mutations for the proxy to choose among", hint="use search.warmup.moves=1, or a strategy "
                          "that mutates: evolution, evolution_textbook, nsga2")
    if settings.include_default and not strategy.draws:
        raise ConfigError("search.include_default", f"{cfg.search.name} ({type(strategy).__name__}) samples every "
                          "candidate from its policy: it has no random draw for the default to take the place of",
                          hint="use a strategy that draws: random, evolution, nsga2, local, optuna_tpe")
    warmup = build_warmup(cfg, settings.warmup, evaluator, space)
    on_ray = settings.executor == "ray"
    gpus = visible_gpus() if workers > 1 and not on_ray else []  # Ray hands out GPUs itself (search.ray.num_gpus)
    gpus = gpus if len(gpus) > 1 else []  # one GPU (or none): every worker uses what this process sees
    on_gpus = f" on GPUs {','.join(gpus)}" if gpus else ""
    print(f"searching {space.name} ({len(space.decisions)} decisions, {space.size:,} architectures) with "
          f"{cfg.search.name}, budget {cfg.search.budget}, seed {cfg.seed}"
          f"{f', {workers} workers{on_gpus}' if workers > 1 else ''}{' on Ray' if on_ray else ''}"
          f"{f', warm start: the best of {warmup.pool} by {warmup.proxy}' if warmup and warmup.pool else ''}"
          f"{f', moves: the best of {warmup.moves} mutations by {warmup.proxy}' if warmup and warmup.moves > 1 else ''}"
          f"{', starting from the default' if settings.include_default else ''}; writing to {out}")
    evaluator.prepare(space, out)   # e.g. the zero-cost evaluator's reference pool, scored once per run
    # workers receive the space, pickled, and build their evaluator from the config
    worker_context = (partial(evaluation_context, worker_config(cfg), space=space, run_dir=out)
                      if workers > 1 or on_ray else None)
    return SearchLoop(space, strategy, evaluator, objectives, int(cfg.search.budget), out, seed=int(cfg.seed),
                      progress=bool(cfg.search.get("progress", True)), measurements=measurements, workers=workers,
                      worker_context=worker_context, devices=gpus, executor=settings.executor, ray=settings.ray,
                      warmup=warmup, include_default=settings.include_default)


def one_shot_loop(cfg: DictConfig, kind: type[OneShotStrategy], objectives: ObjectiveSet, evaluator: Evaluator,
                  measurements: Sequence[Measurement], out: Path) -> SearchLoop:
    """The loop of a one-shot strategy (DARTS), after its search phase: its derived candidates, evaluated (or, when
    it does not evaluate them, recorded as derived) at the size it gives them."""
    settings = kind.configure(cfg.search)
    space = build_space(cfg, evaluator, validate=not kind.checks_options)
    strategy = kind(space=space, seed=int(cfg.seed), objectives=objectives, settings=settings)
    strategy.adopt(evaluator)
    if strategy.evaluates:
        objectives.check_reported(reported_metrics(evaluator, measurements))
    strategy.fit(evaluator.data, out)  # resumes from its own checkpoint in out
    candidates = candidate_space(cfg, evaluator, space, strategy.candidate_params)
    if strategy.evaluates:
        evaluator.prepare(candidates, out)
    return SearchLoop(candidates, strategy,
                      evaluator if strategy.evaluates else Unevaluated(), objectives, strategy.budget, out,
                      seed=int(cfg.seed), progress=bool(cfg.search.get("progress", True)), measurements=measurements)


def search_task(cfg: DictConfig) -> int:
    check_run_config(cfg, "search", "objective", "profile", "space", "evaluator")
    one_shot = one_shot_strategy(cfg.search)  # DARTS; None: a sampling strategy
    settings = search_config(cfg.search) if one_shot is None else None
    if settings is not None and settings.executor == "ray":
        require_ray()  # before anything is written
    export = check_value(cfg.task.get("export_best", True), bool, "task.export_best")
    formats = export_formats(cfg)  # checked before the search, not after it
    out = output_dir(cfg)
    start_run(out, cfg)  # a resume with another configuration stops here; records run.json and config.yaml
    objectives, evaluator, measurements = evaluation_parts(cfg)
    start = time.perf_counter()
    try:
        loop = (sampling_loop(cfg, settings, objectives, evaluator, measurements, out) if settings is not None
                else one_shot_loop(cfg, one_shot, objectives, evaluator, measurements, out))
    except SearchStopped as stop:  # a one-shot search phase that cannot go on (diverged: 3, out of memory: 4)
        print(stop)
        return stop.status
    records = loop.run()  # a run directory it cannot continue is an ArchError (exit 2)
    space, strategy = loop.space, loop.strategy
    evaluated = not isinstance(strategy, OneShotStrategy) or strategy.evaluates
    # not evaluated: the one-shot strategy's own (last) candidate is the answer
    best = best_record(records, objectives) if evaluated else (records[-1] if records else None)
    exported = best is not None and export
    # the one step after the search that trains: the best architecture, for deployment
    final = export_best(best, space, loop.evaluator, out / "best", formats, bool(cfg.get("debug"))) if exported \
        else None
    summary = write_report(records, space, objectives, out, final=final, best_exported=exported,
                           notes=strategy.report_notes(), export_formats=formats)
    elapsed = time.perf_counter() - start
    if best is None:
        print(f"no candidate succeeded in {len(records)} evaluations; see {out / 'history.jsonl'}")
        return 1
    if not evaluated:
        where = f"{out / 'best'} holds its files" if exported else f"{out / 'history.jsonl'} records it"
        print(f"derived architecture not evaluated or trained, as configured: {where}; report: {out / 'report.md'} "
              f"({elapsed:.1f} s)")
        return 0
    metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"  # objective order, then params
                        for k, v in headline_metrics(best["metrics"], objectives) if k in objectives.names + ["params"])
    final = summary["final"]
    decisions = ", ".join(f"{k}={v}" for k, v in space.describe(best["genotype"]).items())  # the space's order
    print(f"best of {len(records)}: {metrics} ({decisions})")
    if final:
        print("final training: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                             for k, v in final.items() if isinstance(v, (int, float))))
    exported_to = f"; best: {out / 'best'}" if export else ""
    print(f"pareto front: {len(summary['front'])} architecture(s); report: {out / 'report.md'}{exported_to} "
          f"({elapsed:.1f} s)")
    if final and final.get("status", "ok") != "ok":
        print(f"the best architecture failed its final training: {final.get('message')}; "
              f"see {out / 'best' / 'metrics.json'}")
        return 1
    return 0
