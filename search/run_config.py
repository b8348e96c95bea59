"""A run directory's configuration: recorded when a run starts (``run.json``), compared when it resumes.

A resumed run must continue the run it finds, so the whole resolved configuration is compared and every
difference is refused, listed as ``key: old -> new``, except the keys in ``RESUMABLE``: they change how the run is
shown or where it runs, or only what is done after the search, never a recorded result. Searches and DARTS both
go through ``start_run``; ``config_changes`` is also what the search loop and DARTS' checkpoint use to explain a
mismatch.
"""
from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from compiler.errors import ArchError, Span
from search.journal import atomic_write_json, read_json

RUN_FILE = "run.json"
STATE_FILES = ("history.jsonl", "checkpoint.json", "darts_state.pt")  # what a run that has started leaves

# key (or fnmatch pattern of a dotted key) -> why it may change on resume. Documented in README "Resume".
RESUMABLE: dict[str, str] = {
    "search.budget": "may grow (never shrink): the run goes on to the new budget",
    "search.workers": "how many candidates are evaluated at once",
    "search.executor": "where candidates run (local or ray); results are recorded in proposal order either way",
    "search.ray*": "the Ray cluster and each worker's resources",
    "*.progress": "display only",
    "trainer.log_epochs": "display only (a log line per epoch)",
    "out_dir": "the same directory may be named another way",
    "debug": "tracebacks and IR checks only",
    "export": "deployment files written after the search",
    "task.export_best": "best/ is written after the search",
    "evaluator.final_overrides*": "the final training of the best architecture, after the search",
    "search.retrain*": "DARTS: the derived network's training, after the search",
    "search.memory_limit_mb": "DARTS: a check before training",
    "search.device": "DARTS: where the supernet trains",
    "search.cpu_threads": "DARTS: CPU threads",
}
GROWS_ONLY = ("search.budget",)

# Keys added after run directories were first written -> the value that does what runs did before the key existed.
# A recorded configuration without such a key is read as holding that value, so that adding a key whose default keeps
# the old behaviour does not stop older runs from resuming. Every such new key belongs here.
ADDED: dict[str, Any] = {
    "search.include_default": False,   # 2026-12-07: the space's default genotype as the first candidate
    "trainer.log_epochs": True,        # 2026-12-07: a log line per epoch (also RESUMABLE: display only)
    "search.max_seconds": None,        # 2026-12-07: DARTS: a time limit on the supernet's training
}


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists are values."""
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def resumable(key: str) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in RESUMABLE)


_ABSENT = object()


def _shown(value: Any) -> str:
    return "(absent)" if value is _ABSENT else json.dumps(value)


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any], allowed: bool = False) -> list[str]:
    """Differences between two (nested) configurations, one ``key: old -> new`` each, sorted. ``allowed``: leave
    out the keys that may change on resume (``RESUMABLE``), except a budget that shrinks. A key of ``ADDED`` that
    ``old`` lacks where ``new`` has it is compared as its value from before the key existed."""
    before, after = flatten(old), flatten(new)
    before.update({key: value for key, value in ADDED.items() if key not in before and key in after})
    lines = []
    for key in sorted({*before, *after}):
        a, b = before.get(key, _ABSENT), after.get(key, _ABSENT)
        if a == b:
            continue
        if allowed and resumable(key) and not (key in GROWS_ONLY and _shrinks(a, b)):
            continue
        lines.append(f"{key}: {_shown(a)} -> {_shown(b)}" + (" (may only grow)" if key in GROWS_ONLY else ""))
    return lines


def _shrinks(old: Any, new: Any) -> bool:
    try:
        return float(new) < float(old)
    except (TypeError, ValueError):
        return True  # not numbers: not a budget that grows


def resolved(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def recorded_config(out: Path) -> dict[str, Any] | None:
    """The configuration ``out/run.json`` records, or None; a damaged file is a located error."""
    path = out / RUN_FILE
    try:
        data = read_json(path)
    except json.JSONDecodeError as err:
        raise ArchError(f"not valid JSON ({err.msg})", Span(str(path), err.lineno, err.colno),
                        hint="restore the file, or use a new out_dir") from err
    if data is None:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise ArchError("not a run record (a JSON object with a 'config' object)", Span(str(path), 0, 0),
                        hint="restore the file, or use a new out_dir")
    return data["config"]


def start_run(out: Path, cfg: DictConfig) -> None:
    """Before a search starts or resumes in ``out``: refuse a configuration that differs from the recorded one
    (outside ``RESUMABLE``), then record this one (``run.json``, and ``config.yaml`` for people)."""
    config = resolved(cfg)
    old = recorded_config(out)
    started = any((out / name).exists() for name in STATE_FILES)
    if old is not None and started:
        changes = config_changes(old, config, allowed=True)
        if changes:
            listed = "\n".join(f"    {line}" for line in changes)
            raise ArchError(f"{out} holds a run of another configuration; resuming it would mix results. "
                            f"Changed:\n{listed}", Span(str(out / RUN_FILE), 0, 0),
                            hint="resume with the settings of that run, or use a new out_dir. May change on "
                            "resume: " + ", ".join(RESUMABLE))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / RUN_FILE, {"version": 1, "config": config})
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
