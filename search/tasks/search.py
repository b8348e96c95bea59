"""`python -m compiler +search=NAME`: build the space, strategy and evaluator from the config and run the loop."""
from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from compiler.api import CompileOptions, read_source
from compiler.config_values import ConfigError, check_value
from compiler.ir.ops import load_op_modules
from compiler.space import Space, load_space_file
from search.tasks.common import export_formats, output_dir
from search.loop import SearchLoop
from search.parallel import Context, visible_gpus
from search.ray_executor import require_ray
from search.report import headline_metrics, write_report
from search.run_config import start_run
from search.schema import build, check_run_config, objective_set, refusals_named, search_config
from search.structured import plain
from search.training.specialise import data_parameters, model_parameters

log = logging.getLogger("search")


def build_space(cfg: DictConfig, evaluator: Any, validate: bool = True) -> Space:
    """The space, re-specialised to the evaluator's data when it trains: the data's input shape, and the model
    parameters `num_classes` / `in_channels` / `size` where the space declares them (as `task=train` does).
    ``validate``: compile every option first (a supernet, which holds every option, checks them itself)."""
    given = cfg.space.get("params")
    # conf/space/ declares the file's parameters (so `space.params.channels=8` works); null: the file's default
    params: dict[str, Any] = {k: v for k, v in (plain(given) or {}).items() if v is not None}
    input_shape = None
    data = getattr(evaluator, "data", None)  # evaluators that train expose their DataSplits
    if data is not None:
        input_shape = tuple(data.input_shape)
        declared = model_parameters(read_source(cfg.space.arch), str(cfg.space.arch))
        params = {**data_parameters(declared, data), **params}
    space = load_space_file(cfg.space.arch, options=CompileOptions(input_shape=input_shape), **params)
    if validate:
        space.validate(samples=4)  # a space whose options cannot all have consistent shapes stops here, located
    return space


WORKER_KEYS = ("ops", "objective", "evaluator", "space", "profile")  # what a worker needs of the config


def evaluation_context(cfg: DictConfig | dict[str, Any], validate: bool = False) -> Context:
    """Space, evaluator, objectives and measurements, built from the config: by the main process and, from a
    resolved copy of the config (``worker_config``), by every parallel worker, the same way."""
    cfg = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg)
    load_op_modules(cfg.get("ops") or [])
    objectives = objective_set(cfg.objective)
    evaluator = build(cfg.evaluator, "evaluator")
    space = build_space(cfg, evaluator, validate=validate)
    profile = cfg.get("profile")
    measurements = [build(profile, "profile")] if profile and profile.get("_target_") else []
    return Context(space, evaluator, objectives, measurements)


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


def search_task(cfg: DictConfig) -> int:
    check_run_config(cfg, "search", "objective", "profile", "space", "evaluator")
    settings = search_config(cfg.search)
    if settings.executor == "ray":
        require_ray()  # before anything is written
    check_value(cfg.task.get("export_best", True), bool, "task.export_best")
    formats = export_formats(cfg)  # checked before the search, not after it
    out = output_dir(cfg)
    start_run(out, cfg)  # a resume with another configuration stops here; records run.json and config.yaml
    workers = int(cfg.search.workers)
    context = evaluation_context(cfg, validate=True)
    space, evaluator, objectives, measurements = (context.space, context.evaluator, context.objectives,
                                                  context.measurements)
    if workers > 1 and any(getattr(m, "measures_time", False) for m in measurements):
        raise ConfigError("search.workers", f"search.workers={workers} with profile={profile_choice(cfg)}: latency "
                          "would be timed while other workers train on the same machine",
                          hint="use search.workers=1, or profile=predictor with profile.measure_missing=false "
                               "(a table built beforehand), or profile=none")
    # _partial_: Hydra would try to turn the space object into config if it were passed to instantiate.
    make_strategy = build(cfg.search.strategy, "search.strategy", _partial_=True)
    with refusals_named("search.strategy"):
        strategy = make_strategy(space=space, seed=int(cfg.seed), objectives=objectives)
    on_ray = settings.executor == "ray"
    gpus = visible_gpus() if workers > 1 and not on_ray else []  # Ray hands out GPUs itself (search.ray.num_gpus)
    gpus = gpus if len(gpus) > 1 else []  # one GPU (or none): every worker uses what this process sees
    on_gpus = f" on GPUs {','.join(gpus)}" if gpus else ""
    print(f"searching {space.name} ({len(space.decisions)} decisions, {space.size:,} architectures) with "
          f"{cfg.search.name}, budget {cfg.search.budget}, seed {cfg.seed}"
          f"{f', {workers} workers{on_gpus}' if workers > 1 else ''}{' on Ray' if on_ray else ''}; writing to {out}")
    start = time.perf_counter()
    loop = SearchLoop(space, strategy, evaluator, objectives, int(cfg.search.budget), out, seed=int(cfg.seed),
                      progress=bool(cfg.search.get("progress", True)), measurements=measurements, workers=workers,
                      worker_context=partial(evaluation_context, worker_config(cfg)) if workers > 1 or on_ray else None,
                      devices=gpus, executor=settings.executor, ray=settings.ray)
    records = loop.run()  # a run directory it cannot continue is an ArchError (exit 2)
    summary = write_report(records, space, evaluator, objectives, out, export=bool(cfg.task.get("export_best", True)),
                           export_formats=formats, library_logs=bool(cfg.get("debug")))
    best = summary["best"]
    elapsed = time.perf_counter() - start
    if best is None:
        print(f"no candidate succeeded in {len(records)} evaluations; see {out / 'history.jsonl'}")
        return 1
    metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"  # objective order, then params
                        for k, v in headline_metrics(best["metrics"], objectives) if k in objectives.names + ["params"])
    final = summary["final"]
    decisions = ", ".join(f"{k}={v}" for k, v in space.describe(best["genotype"]).items())  # the space's order
    print(f"best of {len(records)}: {metrics} ({decisions})")
    if final:
        print("final training: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                             for k, v in final.items() if isinstance(v, (int, float))))
    exported = f"; best: {out / 'best'}" if cfg.task.get("export_best", True) else ""
    print(f"pareto front: {len(summary['front'])} architecture(s); report: {out / 'report.md'}{exported} "
          f"({elapsed:.1f} s)")
    return 0
