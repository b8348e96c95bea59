"""What the search frame asks of an evaluator and of a measurement: two typed Protocols, no attribute probing.

An evaluator turns a genotype of a space into metrics (``{"accuracy": 0.91, "status": "ok", ...}``); the loop adds
the analytic cost (``CostEvaluator``) and the measurements (latency, memory of the compiled candidate) to every
result. ``EvaluatorBase`` gives every optional part its do-nothing default, so an evaluator writes only
``__call__`` and ``metric_names`` and overrides what it does more (train, learn from results, hold data).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:
    from search.data import DataSplits

Metrics = Mapping[str, Any]


@runtime_checkable
class Evaluator(Protocol):
    """Scores candidates of a space for the search loop (``search/loop.py``) and trains the best one.

    Guarantees the loop relies on: ``__call__`` is deterministic for a given genotype and its earlier
    observations (so a resumed run equals an uninterrupted one), and reports a failure as ``status`` rather than
    raising where it can (an exception is recorded as status ``error`` too)."""

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The numeric metrics ``__call__`` reports (besides ``status``): what objectives and constraints may name."""
        ...

    @property
    def data(self) -> DataSplits | None:
        """The data set it trains on (the space is re-specialised to its input shape and classes), or None."""
        ...

    @property
    def measures_time(self) -> bool:
        """Whether its figures need the machine to itself (then candidates are not evaluated in parallel)."""
        ...

    @property
    def observes_results(self) -> bool:
        """Whether ``observe``/``observe_all`` change its later results (then parallel workers are sent the
        results recorded so far with every candidate)."""
        ...

    def __call__(self, genotype: Sequence[int], space: Any) -> Metrics:
        """The metrics of one candidate (``space.compile(genotype)`` is the network)."""
        ...

    def prepare(self, space: Any, run_dir: Path | None) -> None:
        """Get ready to score candidates of ``space`` in the run whose directory is ``run_dir`` (None: no files),
        before the first candidate: e.g. score a reference pool and keep it there. Called by the search task on
        every start or resume, and by each parallel worker (after the main process), so it must read back what an
        earlier call wrote rather than compute it anew."""
        ...

    def observe(self, metrics: Metrics) -> None:
        """Learn from one recorded result (also the ones replayed when a run resumes)."""
        ...

    def observe_all(self, results: Sequence[Metrics]) -> None:
        """Know exactly these results and nothing else (a parallel worker, before each candidate)."""
        ...

    def final(self, genotype: Sequence[int], space: Any, out: Path) -> dict[str, Any] | None:
        """Train the chosen architecture for deployment: weights and files in ``out`` (``best/``), its metrics;
        None when this evaluator cannot train."""
        ...


class EvaluatorBase:
    """The defaults of every optional part of ``Evaluator``: no data, nothing to prepare, no timing, learns nothing,
    cannot train."""

    metric_names: tuple[str, ...] = ()
    measures_time: bool = False
    observes_results: bool = False

    @property
    def data(self) -> DataSplits | None:
        return None

    def __call__(self, genotype: Sequence[int], space: Any) -> Metrics:
        raise NotImplementedError

    def prepare(self, space: Any, run_dir: Path | None) -> None:
        return None

    def observe(self, metrics: Metrics) -> None:
        return None

    def observe_all(self, results: Sequence[Metrics]) -> None:
        return None

    def final(self, genotype: Sequence[int], space: Any, out: Path) -> dict[str, Any] | None:
        return None


DERIVED_STATUS = "derived"


class Unevaluated(EvaluatorBase):
    """Records a candidate without evaluating it (status ``derived``: its record holds the cost every record gets
    and what the strategy measured), and cannot train it: for a one-shot search asked only to derive (DARTS'
    ``search.train_derived=false``), whose best/ then holds the network's files untrained."""

    def __call__(self, genotype: Sequence[int], space: Any) -> Metrics:
        return {"status": DERIVED_STATUS}


@runtime_checkable
class Measurement(Protocol):
    """A measurement of every compiled candidate (the ``profile`` group: ``search/profiling``'s ``Profiler``,
    ``LatencyPredictor``), taken before the evaluator runs so that a broken constraint skips the training."""

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The metrics it reports (e.g. ``latency_ms``)."""
        ...

    @property
    def measures_time(self) -> bool:
        """Whether it times anything while the search runs (then candidates are not evaluated in parallel)."""
        ...

    def __call__(self, compiled: Any) -> Metrics:
        """The metrics of one compiled candidate (``compiler.api.CompileResult``)."""
        ...
