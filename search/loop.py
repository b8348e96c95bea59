"""The search loop: ask a strategy, evaluate, journal, checkpoint; resumes a killed run exactly.

Resume: the checkpoint (strategy + budget state) is written after every journalled evaluation. On restart the
checkpoint is loaded and any journal lines written after it (a kill between the two writes) are replayed, so no
recorded evaluation is lost or repeated and the run continues as if it had never stopped. A candidate that fails
(invalid shapes, an exception, NaN loss, out of memory) is journalled with its status and the search goes on.
"""
from __future__ import annotations

import logging
import math
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from compiler.errors import ArchError
from search.budget import BudgetedSearch
from search.evaluators.cost import CostEvaluator
from search.journal import Journal, atomic_write_json, read_json
from search.objectives import FEASIBLE, INFEASIBLE_STATUS, ObjectiveSet
from search.strategies.base import Strategy

log = logging.getLogger("search")

Evaluator = Callable[[Sequence[int], Any], Mapping[str, Any]]


class ResumeError(RuntimeError):
    """The run directory holds a run that this configuration cannot continue."""


def _failure(err: BaseException) -> dict[str, Any]:
    if isinstance(err, ArchError):
        return {"status": "invalid", "error": str(err)}
    message = f"{type(err).__name__}: {err}"
    status = "oom" if "out of memory" in str(err).lower() else "error"
    return {"status": status, "error": message, "traceback": traceback.format_exc(limit=8)}


def _finite(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """JSON has no NaN: a non-finite metric marks the candidate as diverged."""
    out = dict(metrics)
    for key, value in metrics.items():
        if isinstance(value, float) and not math.isfinite(value):
            out[key] = None
            out["status"] = "diverged" if out.get("status", "ok") == "ok" else out["status"]
    return out


@dataclass
class SearchLoop:
    space: Any                          # compiler.space.Space (decisions, compile, describe)
    strategy: Strategy
    evaluator: Evaluator
    objectives: ObjectiveSet
    budget: int
    out_dir: Path
    seed: int = 0
    progress: bool = True
    max_repeats: int = 100
    measurements: Sequence[Callable[[Any], Mapping[str, Any]]] = ()  # e.g. a latency profiler: compiled -> metrics
    on_result: Callable[[dict[str, Any]], None] | None = None   # a hook for tests (e.g. to kill mid-run)

    @property
    def journal(self) -> Journal:
        return Journal(self.out_dir / "history.jsonl")

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoint.json"

    def identity(self) -> dict[str, Any]:
        """What must match for a run directory to be continued (the budget may grow)."""
        return {"seed": self.seed, "strategy": type(self.strategy).__name__, "space": self.space.name,
                "decisions": [[d.name, list(d.options)] for d in self.space.decisions]}

    def _restore(self, search: BudgetedSearch) -> list[dict[str, Any]]:
        records = self.journal.read()
        state = read_json(self.checkpoint_path)
        start = 0
        if state is not None:
            mine = self.identity()
            for key, value in state.get("identity", {}).items():
                if mine.get(key) != value:
                    raise ResumeError(f"{self.out_dir} holds a run with another {key} ({value!r} there, "
                                      f"{mine.get(key)!r} now): use a new out_dir, or the same settings to resume")
        if state is not None and state["evaluations"] <= len(records):
            try:
                search.load_state_dict(state["search"])
            except ValueError as err:
                raise ResumeError(f"{self.out_dir} holds a run of another configuration: {err}") from err
            start = state["evaluations"]
        observe = getattr(self.evaluator, "observe", None)  # evaluators that learn from results (early stopping)
        if observe is not None:                              # see the past again
            for record in records:
                observe(record["metrics"])
        for record in records[start:]:
            genotype = search.next()
            if genotype is None or list(genotype) != record["genotype"]:
                raise ResumeError(f"{self.out_dir}/history.jsonl does not replay with this configuration "
                                  f"(expected {record['genotype']}, the strategy proposes {genotype}); use a new "
                                  "out_dir or the same seed, space and search settings")
            search.record(genotype, record["metrics"])
        if records:
            log.info("resumed %d evaluation(s) from %s", len(records), self.out_dir)
        return records

    def _evaluate(self, genotype: tuple[int, ...]) -> tuple[dict[str, Any], str]:
        try:
            compiled = self.space.compile(genotype)
            arch = compiled.arch
        except ArchError as err:
            return _failure(err), ""
        try:
            # the cheap metrics first: a candidate that already breaks a hard constraint (params, latency, ...)
            # is not trained at all
            metrics = dict(CostEvaluator()(genotype, self.space))
            for measure in self.measurements:
                metrics.update(measure(compiled))
            violation = self.objectives.known_violation(metrics)
            if violation > 0:
                broken = ", ".join(f"{c.name}={metrics[c.name]:.4g} breaks {c}" for c in self.objectives.constraints
                                   if c.name in metrics and c.violation(metrics) > 0)
                return _finite({**metrics, "status": INFEASIBLE_STATUS, "violation": violation,
                                "message": f"not trained: {broken}"}), arch
            metrics.update(self.evaluator(genotype, self.space))
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:  # a failing candidate is a result, not the end of the search
            log.warning("candidate %s failed: %s: %s", list(genotype), type(err).__name__, err)
            metrics = {"params": compiled.summary["params"], "macs": compiled.summary["macs"], **_failure(err)}
        return _finite(metrics), arch

    def run(self) -> list[dict[str, Any]]:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        search = BudgetedSearch(self.strategy, self.budget, seed=self.seed, max_repeats=self.max_repeats)
        records = self._restore(search)
        bar = None
        if self.progress:
            from tqdm import tqdm
            bar = tqdm(total=self.budget, initial=len(records), desc="search", unit="arch", dynamic_ncols=True)
        best = max((self.objectives.fitness(r["metrics"]) for r in records), default=None)
        try:
            while (genotype := search.next()) is not None:
                start = time.perf_counter()
                metrics, arch = self._evaluate(genotype)
                record = {"index": len(records), "genotype": list(genotype),
                          "decisions": self.space.describe(genotype), "arch": arch, "metrics": metrics,
                          "status": metrics.get("status", "ok"), "seconds": round(time.perf_counter() - start, 4),
                          "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
                self.journal.append(record)
                search.record(genotype, metrics)
                records.append(record)
                atomic_write_json(self.checkpoint_path, {"evaluations": len(records), "identity": self.identity(),
                                                         "search": search.state_dict()})
                fitness = self.objectives.fitness(metrics)
                best = fitness if best is None or fitness > best else best
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(self._postfix(metrics, best))
                if self.on_result is not None:
                    self.on_result(record)
        finally:
            if bar is not None:
                bar.close()
        return records

    def _postfix(self, metrics: Mapping[str, Any], best: Any) -> str:
        name = self.objectives.primary.name
        value = metrics.get(name)
        shown = f"{value:.4g}" if isinstance(value, (int, float)) else metrics.get("status")
        best_value = self.objectives.primary.signed(best.value) if best is not None and best.tier == FEASIBLE else None
        return f"{name}={shown} best={best_value:.4g}" if best_value is not None else f"{name}={shown}"
