"""`python -m compiler task=profile_ops device=cpu|cuda`: build this machine's per-op latency table and report
the predictor's error against end-to-end measurements of the same models."""
from __future__ import annotations

import glob
import json
import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from compiler.api import CompileOptions, CompileResult, compile_file, compile_source
from compiler.config_values import ConfigError
from compiler.errors import ArchError
from compiler.ir.ops import load_op_modules
from compiler.backends.runtime.measure import Settings
from search.tasks.profile_ops_options import check_profile_ops_options
from search.profiling.optable import LatencyTable, fill_table, measure_compiled_ms
from search.profiling.predictor import error_stats, fit_scale, held_out_calibration, predict_ms
from search.profiling.synthetic import mobilenet_like, sample_space
from search.tasks.common import compile_options
from compiler.run_dir import output_dir

log = logging.getLogger("search.profiling")
DEFAULT_CPU_ROTATE_MB = 32.0


def model_files(patterns: list[str]) -> list[Path]:
    files: list[Path] = []
    for pattern in patterns:
        found = sorted(Path(p) for p in glob.glob(pattern))
        if not found:
            raise ConfigError("task.archs", f"no .arch file matches '{pattern}'",
                            hint="paths are relative to where you run the command, e.g. task.archs=[examples/*.arch]")
        files.extend(found)
    return files


def collect_models(task: DictConfig, options: CompileOptions | None = None) -> list[tuple[str, CompileResult]]:
    """(name, model): the configured files, random samples of the configured space, and random MobileNetV2-like
    networks, compiled with ``options`` (the config's limits, passes, ...)."""
    options = options or CompileOptions()
    models = [(f.stem, compile_file(f, options=options)) for f in model_files(list(task.archs))]
    if task.get("space"):
        try:
            models += sample_space(task.space, int(task.space_samples), int(task.seed), options=options)
        except ValueError as err:
            raise ConfigError("task.space_samples", str(err), hint="lower task.space_samples") from err
    for k in range(int(task.synthetic)):
        seed = int(task.seed) + k
        text = mobilenet_like(seed, resolution=int(task.synthetic_resolution))
        models.append((f"mnet_{seed}", compile_source(text, f"<synthetic mobilenet_like({seed})>", options=options)))
    return models


def settings_for(cfg: DictConfig, min_time_s: float, batch_sizes: tuple[int, ...]) -> Settings:
    task = cfg.task
    device = cfg.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return Settings(device=device, batch_sizes=batch_sizes, dtype=task.dtype,
                        channels_last=bool(task.channels_last), threads=task.threads, clock=task.clock,
                        min_time_s=min_time_s, cpu=task.get("cpu"))
    except ValueError as err:
        raise ArchError(str(err), hint="fix device=... or the task.* settings on the command line") from err


def rotate_mb(task: DictConfig, settings: Settings) -> float:
    """Cold-cache footprint for op timing: CPU caches hold one op's data between calls but not a whole model's
    (on a 2-core Xeon, the examples' MAPE was 37 % without and 14 % with 32 MB); on a GPU the default is off."""
    if task.get("rotate_mb") is not None:
        return float(task.rotate_mb)
    return 0.0 if settings.device.startswith("cuda") else DEFAULT_CPU_ROTATE_MB


def profile_ops_task(cfg: DictConfig) -> int:
    check_profile_ops_options(cfg.task)
    load_op_modules(cfg.get("ops") or [])
    task = cfg.task
    sizes = tuple(int(b) for b in task.batch_sizes)
    op_settings = settings_for(cfg, float(task.op_min_time_s), sizes)
    out = output_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    device_type = op_settings.device.split(":")[0]
    table_path = Path(task.table) if task.get("table") else out / f"latency_table_{device_type}.json"
    table = (LatencyTable.load(table_path) if table_path.exists()
             else LatencyTable.for_settings(op_settings, rotate_mb(task, op_settings)))
    try:
        table.check_compatible(op_settings)
    except ValueError as err:
        raise ConfigError("task.table", str(err), hint=f"pass another task.table, or delete {table_path}") from err
    models = collect_models(task, compile_options(cfg))

    def progress(done: int, total: int) -> None:
        if done == total or done % 25 == 0:
            log.info("measured %d/%d op entries", done, total)

    added = fill_table(table, [m.graph for _, m in models], sizes, op_settings, progress,
                       rounds=int(task.get("op_rounds", 1)))
    table.save(table_path)
    print(f"latency table: {len(table.entries)} ops ({added} entries measured now) on {table.device} -> {table_path}")
    if not task.report:
        return 0
    report = error_report(models, table, settings_for(cfg, float(task.model_min_time_s), sizes),
                          int(task.model_rounds))
    if task.get("calibrate", True):
        for batch, part in report["batch_sizes"].items():
            if "calibration" in part:
                table.calibration[batch] = part["calibration"]["scale"]
        table.save(table_path)
    (out / "predictor_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(format_error_report(report))
    print(f"wrote {out / 'predictor_report.json'}")
    return 0


def error_report(models: list[tuple[str, CompileResult]], table: LatencyTable, settings: Settings,
                 rounds: int = 1) -> dict[str, Any]:
    """Predicted against measured median latency for every model and batch size. With several rounds (over all
    models in turn) a model's figure is its lowest median: other jobs on a machine only ever slow a run down."""
    report: dict[str, Any] = {"device": table.device, "settings": table.settings, "rounds": rounds,
                              "batch_sizes": {}}
    for batch in settings.batch_sizes:
        times = [[measure_compiled_ms(m, batch, settings) for _, m in models] for _ in range(rounds)]
        rows = []
        for (name, model), measured in zip(models, map(min, zip(*times))):
            predicted = predict_ms(table, model.graph, batch, calibrated=False)
            rows.append({"model": name, "measured_ms": measured, "predicted_ms": predicted,
                         "error_pct": 100 * (predicted - measured) / measured})
        predicted, measured = [r["predicted_ms"] for r in rows], [r["measured_ms"] for r in rows]
        stats = error_stats(predicted, measured)
        part = {"rows": rows, "stats": stats.__dict__, "summary": stats.line()}
        if len(rows) >= 4:  # enough networks to fit a scale and judge it on networks left out of the fit
            held_out = held_out_calibration(predicted, measured)
            part["calibration"] = {"scale": fit_scale(predicted, measured), "held_out": held_out.__dict__,
                                   "summary": held_out.line()}
        report["batch_sizes"][str(batch)] = part
    return report


def format_error_report(report: dict[str, Any]) -> str:
    lines = [f"predictor error on {report['device']} ({report['settings']['dtype']})"]
    for batch, part in report["batch_sizes"].items():
        lines.append(f"batch {batch}: {'model':<22} {'measured ms':>12} {'predicted ms':>13} {'error':>8}")
        lines += [f"{'':9}{r['model']:<22} {r['measured_ms']:>12.3f} {r['predicted_ms']:>13.3f} "
                  f"{r['error_pct']:>+7.1f}%" for r in part["rows"]]
        lines.append(f"batch {batch}: {part['summary']}")
        if "calibration" in part:
            lines.append(f"batch {batch}: calibrated (scale {part['calibration']['scale']:.3f}; error of two-fold "
                         f"fits on the networks left out): {part['calibration']['summary']}")
    return "\n".join(lines)
