"""The search loop: ask a strategy, evaluate, journal, checkpoint; resumes a killed run exactly.

Resume: the checkpoint (strategy + budget state, and the candidates in flight) is written after every journalled
evaluation. On restart the checkpoint is loaded and any journal lines written after it (a kill between the two
writes) are replayed, so no recorded evaluation is lost or repeated and the run continues as if it had never
stopped. A candidate that fails (invalid shapes, an exception, NaN loss, out of memory) is journalled with its
status and the search goes on.

The loop is the one writer of history.jsonl, for every strategy: a one-shot strategy (DARTS) runs its search phase
before the loop (``search/strategies/one_shot.py``) and its derived candidates are asked, evaluated and journalled
here like any other.

Warm start (``warmup``): before the first ask the strategy is seeded with a pool ranked by a zero-cost proxy; the pool's
scores are kept in the run directory, so a resumed run seeds it identically without scoring again. With
``warmup.moves`` > 1 the strategy's mutations are screened by the same proxy (``Strategy.screen_with``; the ensemble
ranks them against the pool when there is one); the screened children's scores are kept alike (screen.jsonl), and the
seconds spent scoring them are logged at the end.

Parallel evaluation (``workers`` > 1, see ``search/parallel.py``; on Ray, ``search/ray_executor.py``): up to
``workers`` candidates are in flight and results are recorded in the order the candidates were proposed, so a run
depends on its seed and worker count only, not on the executor.
"""
from __future__ import annotations

import contextlib
import json
import logging
from collections import deque
from concurrent.futures import Executor, Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from compiler.errors import ArchError, Span
from search.budget import BudgetedSearch
from search.evaluators.base import Evaluator, Measurement
from search.journal import Journal, atomic_write_json, read_json
from search.objectives import FEASIBLE, ObjectiveSet
from search.parallel import (Context, InlineExecutor, Outcome, evaluate_candidate, evaluate_in_worker, make_pool,
                             worker_lost)
from search.run_config import config_changes
from compiler.ir.space import Genotype
from search.strategies.base import Strategy
from search.warmup import Warmup, rank_pool

log = logging.getLogger("search")


class ResumeError(ArchError):
    """The run directory holds a run that this configuration cannot continue (or damaged run state)."""

    def __init__(self, message: str, path: Path, line: int = 0, hint: str | None = None) -> None:
        super().__init__(message, Span(str(path), line, 1 if line else 0),
                         hint=hint or "use a new out_dir, or the settings of that run to resume it")


def read_checkpoint(path: Path) -> dict[str, Any] | None:
    """checkpoint.json, checked: a JSON object with the evaluations done, the search state and its identity."""
    hint = "restore the file, or delete it: the search state is then rebuilt from history.jsonl"
    try:
        state = read_json(path)
    except json.JSONDecodeError as err:
        raise ArchError(f"not valid JSON ({err.msg})", Span(str(path), err.lineno, err.colno), hint=hint) from err
    if state is None:
        return None
    kinds = {"evaluations": int, "search": dict, "identity": dict, "in_flight": list}
    if not isinstance(state, dict) or any(k not in state for k in kinds):
        raise ResumeError(f"not a search checkpoint (a JSON object with {', '.join(kinds)})", path, hint=hint)
    wrong = [k for k, kind in kinds.items() if not isinstance(state[k], kind) or isinstance(state[k], bool)]
    in_flight_ok = all(isinstance(g, list) and all(isinstance(v, int) for v in g) for g in state["in_flight"])
    if wrong or not in_flight_ok or state["evaluations"] < 0:
        raise ResumeError(f"not a search checkpoint (bad {', '.join(wrong) or 'evaluations or in_flight'})", path,
                          hint=hint)
    return state


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
    measurements: Sequence[Measurement] = ()  # e.g. a latency profiler: compiled -> metrics
    on_result: Callable[[dict[str, Any]], None] | None = None   # a hook for tests (e.g. to kill mid-run)
    workers: int = 1                    # candidates evaluated at once, each in its own process when > 1
    worker_context: Callable[[], Context] | None = None  # picklable: builds a worker's Context (workers > 1)
    devices: Sequence[str] = ()         # GPUs to spread the workers over (CUDA_VISIBLE_DEVICES entries)
    executor: str = "local"             # local: this machine's processes; ray: Ray actors (search/ray_executor.py)
    ray: Any = None                     # executor=ray: its RayConfig (address, resources per worker)
    warmup: Warmup | None = None        # search.warmup: a proxy-ranked pool seeds the strategy (search/warmup.py)
    include_default: bool = False       # search.include_default: the space's default genotype is proposed first

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if (self.workers > 1 or self.executor == "ray") and self.worker_context is None:
            raise ValueError("workers > 1 (or executor=ray) needs worker_context: a picklable factory of each "
                             "worker's Context")

    @property
    def journal(self) -> Journal:
        return Journal.of_run(self.out_dir)

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoint.json"

    def identity(self) -> dict[str, Any]:
        """What must match for a run directory to be continued (the budget may grow)."""
        return {"seed": self.seed, "strategy": type(self.strategy).__name__, "space": self.space.name,
                "decisions": [[d.name, list(d.options)] for d in self.space.decisions]}

    def _ask(self, search: BudgetedSearch, busy: int) -> list[Genotype]:
        """New candidates to bring the number in flight from ``busy`` to ``workers`` (fewer when the search ends)."""
        asked: list[Genotype] = []
        while busy + len(asked) < self.workers and (genotype := search.next()) is not None:
            asked.append(genotype)
        return asked

    def _restore(self, search: BudgetedSearch) -> tuple[list[dict[str, Any]], list[Genotype]]:
        """The journalled records, with the search state rebuilt, and the candidates that were in flight."""
        records = self.journal.read()
        for record in records:
            self._check_genotype(record["genotype"], self.journal.path, record["index"] + 1)
        state = read_checkpoint(self.checkpoint_path)
        start = 0
        in_flight: list[Genotype] = []
        if state is not None:
            changes = config_changes(state["identity"], self.identity())
            if changes:
                raise ResumeError(f"{self.out_dir} holds another run; it differs in\n" + "\n".join(
                    f"    {line}" for line in changes), self.checkpoint_path)
        if state is not None and state["evaluations"] <= len(records):
            try:
                search.load_state_dict(state["search"])
            except (ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
                raise ResumeError(f"the search state does not fit this configuration ({type(err).__name__}: "
                                  f"{err})", self.checkpoint_path) from err
            start = state["evaluations"]
            in_flight = [tuple(g) for g in state["in_flight"]]
            for genotype in in_flight:
                self._check_genotype(genotype, self.checkpoint_path)
            search.pending.update(in_flight)  # proposed before the stop: evaluated first, not proposed again
        for record in records:  # an evaluator that learns from results (early stopping) sees the past again
            self.evaluator.observe(record["metrics"])
        for record in records[start:]:  # recorded after the last checkpoint: ask and tell as the run did
            in_flight += self._ask(search, len(in_flight))
            genotype = in_flight.pop(0) if in_flight else None
            if genotype is None or list(genotype) != record["genotype"]:
                raise ResumeError(f"does not replay with this configuration (expected {record['genotype']}, the "
                                  f"strategy proposes {genotype and list(genotype)})", self.journal.path,
                                  record["index"] + 1, hint="use a new out_dir or the same seed, space, search "
                                  "settings and workers")
            search.record(genotype, record["metrics"])
        if records:
            log.info("resumed %d evaluation(s) from %s", len(records), self.out_dir)
        return records, in_flight

    def _check_genotype(self, genotype: Sequence[int], path: Path, line: int = 0) -> None:
        """A genotype read from the run directory must be one of this space's (a record's line: its index + 1)."""
        sizes = [len(d.options) for d in self.space.decisions]
        if len(genotype) != len(sizes) or any(not 0 <= v < n for v, n in zip(genotype, sizes)):
            raise ResumeError(f"the genotype {list(genotype)} is not one of the space {self.space.name} "
                              f"({len(sizes)} decisions)", path, line)

    def _executor(self) -> Executor:
        if self.executor == "ray":  # also with one worker: it may run on a cluster's GPU node
            from search.ray_config import RayConfig
            from search.ray_executor import RayExecutor
            assert self.worker_context is not None
            return RayExecutor(self.workers, self.worker_context, self.ray or RayConfig(), lost=worker_lost)
        if self.workers == 1:
            return InlineExecutor()
        assert self.worker_context is not None
        return make_pool(self.workers, self.worker_context, self.devices)

    def _submit(self, executor: Executor, genotype: Genotype, records: Sequence[dict[str, Any]]) -> Future:
        if isinstance(executor, InlineExecutor):  # this process's evaluator has seen every result itself
            return executor.submit(evaluate_candidate, Context(self.space, self.evaluator, self.objectives,
                                                               self.measurements), genotype)
        observed = [r["metrics"] for r in records] if self.evaluator.observes_results else None
        return executor.submit(evaluate_in_worker, genotype, observed)

    def run(self) -> list[dict[str, Any]]:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        screen, pool = None, None
        if self.warmup is not None and self.warmup.pool:   # before the state is restored (it holds the unused seeds)
            pool = self.warmup.scored(self.space, self.out_dir)
            self.strategy.seed_with(rank_pool(pool, self.warmup.proxy))
        if self.include_default:   # also before the state is restored, which then holds the seeds not yet used
            self.strategy.start_with([self.space.default_genotype])
        if self.warmup is not None and self.warmup.moves > 1:   # the ensemble ranks the children against the pool
            screen = self.warmup.screen(self.space, self.out_dir, pool)
            self.strategy.screen_with(screen, self.warmup.moves)
        search = BudgetedSearch(self.strategy, self.budget, seed=self.seed, max_repeats=self.max_repeats)
        records, restored = self._restore(search)
        bar = None
        logs = contextlib.ExitStack()  # closed with the bar
        if self.progress:
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm
            bar = tqdm(total=self.budget, initial=len(records), desc="search", unit="arch", dynamic_ncols=True)
            logs.enter_context(logging_redirect_tqdm())  # log lines (a trainer's epochs) print above the bar
        best = max((self.objectives.fitness(r["metrics"]) for r in records), default=None)
        executor = self._executor()
        finished = False
        try:
            in_flight: deque[tuple[Genotype, Future]] = deque()
            for genotype in restored + self._ask(search, len(restored)):  # those in flight at the stop first
                in_flight.append((genotype, self._submit(executor, genotype, records)))
            while in_flight:
                genotype, future = in_flight.popleft()  # in proposal order, whatever finishes first
                outcome = self._result(genotype, future)
                # with what the strategy itself measured of it (a one-shot strategy: its supernet's figures)
                metrics = {**self.strategy.candidate_metrics(genotype), **outcome.metrics}
                record = self.journal.add(len(records), genotype, self.space.describe(genotype), outcome.arch,
                                          metrics, outcome.seconds)
                search.record(genotype, metrics)
                records.append(record)
                asked = self._ask(search, len(in_flight))
                # the checkpoint (with the new proposals in flight), the bar and the hook come before the next
                # submission: with one worker a submission is the whole evaluation, which must not run ahead of them
                atomic_write_json(self.checkpoint_path, {"evaluations": len(records), "identity": self.identity(),
                                                         "search": search.state_dict(),
                                                         "in_flight": [*(list(g) for g, _ in in_flight),
                                                                       *(list(g) for g in asked)]})
                fitness = self.objectives.fitness(metrics)
                best = fitness if best is None or fitness > best else best
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(self._postfix(metrics, best))
                if self.on_result is not None:
                    self.on_result(record)
                for new in asked:
                    in_flight.append((new, self._submit(executor, new, records)))
            finished = True
        finally:
            # on a normal end every task is done; after an error, queued candidates are dropped (they are in the
            # checkpoint's in_flight list and run first on resume) and running ones are not waited for
            executor.shutdown(wait=finished, cancel_futures=True)
            logs.close()
            if bar is not None:
                bar.close()
            if screen is not None:
                log.info("moves: %d screening(s) of up to %d mutations by %s; %d child(ren) scored in %.1f s (%d read "
                         "back)", screen.screenings, self.strategy.moves, screen.proxy, screen.scored_now,
                         screen.seconds, len(screen.scores) - screen.scored_now)
        return records

    def _result(self, genotype: Genotype, future: Future) -> Outcome:
        try:
            return future.result()
        except BrokenProcessPool as err:
            raise RuntimeError(f"a worker process died while candidates {list(genotype)} and others were being "
                               "evaluated (killed for memory?); run the same command again to resume, or use "
                               "fewer workers") from err

    def _postfix(self, metrics: Mapping[str, Any], best: Any) -> str:
        """This result's primary objective and the best so far (its primary objective; the weighted sum when the
        objectives are weighted)."""
        name = self.objectives.primary.name
        value = metrics.get(name)
        shown = f"{value:.4g}" if isinstance(value, (int, float)) else metrics.get("status")
        if best is None or best.tier != FEASIBLE:
            return f"{name}={shown}"
        if self.objectives.weighted:
            return f"{name}={shown} best score={best.value:.4g}"
        return f"{name}={shown} best={self.objectives.primary.signed(best.value):.4g}"
