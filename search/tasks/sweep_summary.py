"""The table that ends a sweep (`python -m compiler -m ...`): one row per job, read from the files each job wrote.

A Hydra callback (registered under ``hydra.callbacks`` in conf/config.yaml). At the end of a multirun it finds every
job directory of the sweep (``.hydra/hydra.yaml``), reads the job's overrides and its results — ``pareto.json`` of
a search (the entry marked ``"best"``), else ``metrics.json`` of a training run, else ``summary.json`` of a compile —
and prints a table (job, overrides, status, best metrics, directory), also written to the sweep directory as
``summary.md`` and ``summary.json``. It never recomputes a result. A job's status is what Hydra reported for it
when the job ran in this process (the default launcher), else whether its result file is there. The files are also
rewritten after every job, so a sweep that Hydra ends early (it raises once a failed job's batch is done, and
skips ``on_multirun_end``) still leaves its summary.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from compiler.errors import ArchError
from search.journal import atomic_write_json, atomic_write_text
from search.report import format_value
from search.objectives import ObjectiveSet

log = logging.getLogger(__name__)

TRAIN_METRICS = ("test_acc", "val_acc", "params")
COMPILE_METRICS = ("params", "macs")


@dataclass(frozen=True)
class JobSummary:
    job: int
    overrides: list[str]
    status: str
    metrics: dict[str, Any]
    directory: str


def _read_json(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as err:
        log.warning("sweep summary: cannot read %s: %s", path, err)
        return None


def _objective_names(config: Mapping[str, Any]) -> list[str]:
    spec = config.get("objective")
    try:
        return ObjectiveSet.coerce(spec).names if spec else ["accuracy"]
    except ArchError as err:  # a job whose objective config was refused has no pareto.json either
        log.warning("sweep summary: %s", err)
        return ["accuracy"]


def job_results(results: Path, config: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(status, best metrics) from the files a job left in ``results``, or None when it left none."""
    front = _read_json(results / "pareto.json")
    if front is not None:
        best = next((entry for entry in front if entry.get("best")), None)
        if best is None:
            return "no feasible result" if not front else "ok", {}
        names = _objective_names(config)
        names += [n for n in ("params",) if n not in names]
        return "ok", {n: best["metrics"][n] for n in names if n in best["metrics"]}
    trained = _read_json(results / "metrics.json")
    if trained is not None:
        return str(trained.get("status", "ok")), {n: trained[n] for n in TRAIN_METRICS if n in trained}
    compiled = _read_json(results / "summary.json")
    if compiled is not None:
        return "ok", {n: compiled[n] for n in COMPILE_METRICS if n in compiled}
    return None


def _job_out_dir(config: Any) -> str | None:
    """The job's out_dir as the job used it: resolved, since a sweep may build it from swept values
    (``out_dir=runs/seed${seed}``)."""
    try:
        value = OmegaConf.select(config, "out_dir")
    except InterpolationResolutionError:   # one this process cannot resolve: the text as written
        value = OmegaConf.to_container(config).get("out_dir")
    return str(value) if value else None


def collect(sweep_dir: Path, statuses: Mapping[str, str] | None = None) -> list[JobSummary]:
    """Every job of the sweep in ``sweep_dir``, by job number. ``statuses``: Hydra's status by output directory."""
    statuses = statuses or {}
    jobs = []
    for hydra_file in sorted(sweep_dir.glob("**/.hydra/hydra.yaml")):
        hydra_cfg = OmegaConf.load(hydra_file).hydra
        config_file = hydra_file.with_name("config.yaml")
        loaded = OmegaConf.load(config_file) if config_file.exists() else OmegaConf.create()
        config: Any = OmegaConf.to_container(loaded)
        output_dir = Path(str(hydra_cfg.runtime.output_dir))
        out_dir = _job_out_dir(loaded)
        results = Path(out_dir) if out_dir else output_dir
        found = job_results(results, config)
        reported = statuses.get(str(output_dir))  # Hydra's word wins when the job raised; else the files' own
        status = reported if reported not in (None, "ok") else found[0] if found else reported or "no result"
        jobs.append(JobSummary(int(hydra_cfg.job.num), [str(o) for o in hydra_cfg.overrides.task], status,
                               found[1] if found else {}, str(results)))
    return sorted(jobs, key=lambda j: j.job)


def render(jobs: list[JobSummary]) -> str:
    """A markdown table (readable as plain text too); overrides shared by every job are named once, above it."""
    common = [o for o in jobs[0].overrides if all(o in j.overrides for j in jobs)] if jobs else []
    lines = [f"overrides of every job: {' '.join(common)}", ""] if common and len(jobs) > 1 else []
    lines += ["| job | overrides | status | best metrics | directory |", "|---|---|---|---|---|"]
    for j in jobs:
        own = [o for o in j.overrides if o not in common] if len(jobs) > 1 else j.overrides
        metrics = ", ".join(f"{k}={format_value(v)}" for k, v in j.metrics.items()) or "-"
        lines.append(f"| {j.job} | {' '.join(own) or '-'} | {j.status} | {metrics} | {j.directory} |")
    return "\n".join(lines)


def write_summary(sweep_dir: Path, jobs: list[JobSummary]) -> str:
    """summary.md and summary.json, each replaced atomically (parallel launchers' jobs may write at once)."""
    table = render(jobs)
    atomic_write_json(sweep_dir / "summary.json", [asdict(j) for j in jobs])
    atomic_write_text(sweep_dir / "summary.md", f"# Sweep: {len(jobs)} job(s)\n\n{table}\n")
    return table


class SweepSummary(Callback):
    """``on_job_end`` notes each job's status (when jobs run in this process); ``on_multirun_end`` writes the table."""

    def __init__(self) -> None:
        self.statuses: dict[str, str] = {}

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        status = "ok"
        if job_return.status == JobStatus.FAILED:
            error = job_return._return_value  # the exception, without raising it again
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            status = f"failed: {first}"
        self.statuses[str(config.hydra.runtime.output_dir)] = status
        if config.hydra.mode == RunMode.MULTIRUN:  # on_job_end is called for single runs too
            sweep_dir = Path(str(config.hydra.sweep.dir))
            write_summary(sweep_dir, collect(sweep_dir, self.statuses))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        jobs = collect(sweep_dir, self.statuses)
        table = write_summary(sweep_dir, jobs)
        print(f"\nsweep of {len(jobs)} job(s) in {sweep_dir} (summary.md, summary.json):\n{table}")
