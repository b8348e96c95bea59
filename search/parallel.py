"""Evaluating candidates: the one function that turns a genotype into metrics, and the executors that run it.

With ``workers`` > 1 the loop keeps that many candidates in flight on a ``concurrent.futures.ProcessPoolExecutor``
(the standard library's pool; its Executor interface is also what Dask, Loky and Ray's executors offer) and
records results in the order the candidates were proposed, not the order they finish. The sequence of asks and
tells, and so the whole run, then depends only on the seed and the worker count, never on timing, and the
checkpoint can list the candidates in flight so that a killed run resumes exactly.

Workers are started with ``spawn`` (CUDA cannot be used in forked children); on a machine with several GPUs each
worker gets one (``CUDA_VISIBLE_DEVICES``, in turn), so N workers train on N GPUs. Each builds its evaluation context
once, from a picklable factory (a ``functools.partial`` of a module-level function). The search task's factory
carries the main process's Space, pickled (the op registry travels by reference: the worker imports the configured
op modules before it compiles anything), and builds the evaluator from the configuration.
"""
from __future__ import annotations

import logging
import math
import multiprocessing
import os
import signal
import threading
import time
import traceback
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from tqdm import tqdm

from compiler.config_values import ConfigError
from compiler.errors import ArchError
from search.data.base import DataError
from search.evaluators.base import Evaluator, Measurement
from search.evaluators.cost import CostEvaluator
from search.objectives import INFEASIBLE_STATUS, ObjectiveSet

log = logging.getLogger("search")


@dataclass
class Context:
    """What evaluating a candidate needs: the space, the evaluator, extra measurements, the objectives."""
    space: Any
    evaluator: Evaluator
    objectives: ObjectiveSet
    measurements: Sequence[Measurement] = field(default_factory=tuple)


def reported_metrics(evaluator: Evaluator, measurements: Sequence[Measurement]) -> dict[str, tuple[str, ...]]:
    """Every metric ``evaluate_candidate`` can report, by where it first comes from: the cost every candidate gets,
    the measurements (``profile``), the evaluator."""
    sources = {"cost": CostEvaluator.metric_names, "profile": [n for m in measurements for n in m.metric_names],
               "evaluator": evaluator.metric_names}
    seen: set[str] = set()
    reported: dict[str, tuple[str, ...]] = {}
    for where, names in sources.items():
        reported[where] = tuple(n for n in dict.fromkeys(names) if n not in seen)
        seen.update(names)
    return reported


@dataclass
class Outcome:
    metrics: dict[str, Any]
    arch: str          # the candidate's canonical .arch text ("" when it did not compile)
    seconds: float     # wall time of the evaluation, where it ran


def failure(err: BaseException) -> dict[str, Any]:
    if isinstance(err, ArchError):
        return {"status": "invalid", "error": str(err)}
    message = f"{type(err).__name__}: {err}"
    status = "oom" if "out of memory" in str(err).lower() else "error"
    return {"status": status, "error": message, "traceback": traceback.format_exc(limit=8)}


def finite(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """JSON has no NaN: a non-finite metric marks the candidate as diverged."""
    out = dict(metrics)
    for key, value in metrics.items():
        if isinstance(value, float) and not math.isfinite(value):
            out[key] = None
            out["status"] = "diverged" if out.get("status", "ok") == "ok" else out["status"]
    return out


def evaluate_candidate(context: Context, genotype: Sequence[int]) -> Outcome:
    """Compile, cost, measure and (if no hard constraint is already broken) train one candidate. A failing
    candidate is a result (status invalid / error / oom / diverged), never an exception; a config or data mistake
    (ConfigError, DataError: the same for every candidate) is raised."""
    start = time.perf_counter()

    def done(metrics: dict[str, Any], arch: str) -> Outcome:
        return Outcome(finite(metrics), arch, round(time.perf_counter() - start, 4))
    try:
        compiled = context.space.compile(genotype)
        arch = compiled.arch
    except ArchError as err:
        return done(failure(err), "")
    try:
        # the cheap metrics first: a candidate that already breaks a hard constraint is not trained at all
        metrics = dict(CostEvaluator()(genotype, context.space))
        for measure in context.measurements:
            metrics.update(measure(compiled))
        violation = context.objectives.known_violation(metrics)
        if violation > 0:
            broken = ", ".join(f"{c.name}={metrics[c.name]:.4g} breaks {c}" for c in context.objectives.constraints
                               if c.name in metrics and c.violation(metrics) > 0)
            return done({**metrics, "status": INFEASIBLE_STATUS, "violation": violation,
                         "message": f"not trained: {broken}"}, arch)
        metrics.update(context.evaluator(genotype, context.space))
    except (KeyboardInterrupt, SystemExit, ConfigError, DataError):
        raise   # a setting or data set that cannot work fails every candidate alike: the run stops with its message
    except Exception as err:  # a failing candidate is a result, not the end of the search
        log.warning("candidate %s failed: %s: %s", list(genotype), type(err).__name__, err)
        metrics = {"params": compiled.summary["params"], "macs": compiled.summary["macs"], **failure(err)}
    return done(metrics, arch)


class InlineExecutor(Executor):
    """Runs each call at submit time in this process (``workers`` = 1): the same code path, no pool."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as err:  # handed to the caller through the future, as a pool would; Ctrl-C propagates
            future.set_exception(err)
        return future


_WORKER_CONTEXT: Context | None = None  # one per worker process, built by its initializer


def _init_worker(factory: Callable[[], Context], devices: Any) -> None:
    """Runs first in each worker: take a GPU of its own (before CUDA starts), then build the context. Ctrl-C
    reaches the whole process group: the main process alone handles it, and ends the workers (WorkerPool)."""
    global _WORKER_CONTEXT
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # tqdm's default lock is a named semaphore; a worker ended mid-training (WorkerPool.shutdown) would leave it to
    # the resource tracker, which warns about it. One worker trains one candidate at a time: a thread lock will do.
    tqdm.set_lock(threading.RLock())
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = devices.get()  # this worker's "cuda" is that one GPU
    _WORKER_CONTEXT = factory()


def use_worker_context(context: Context) -> None:
    """Make ``context`` this worker process's (a worker started by another engine than ``make_pool``, e.g. Ray)."""
    global _WORKER_CONTEXT
    _WORKER_CONTEXT = context


def evaluate_in_worker(genotype: Sequence[int], observed: Sequence[Mapping[str, Any]] | None) -> Outcome:
    """A pool task. ``observed``: the results recorded so far, for evaluators that learn from them (early
    stopping); a worker's own earlier tasks are not all of them, so it is told the whole record each time."""
    if _WORKER_CONTEXT is None:
        raise RuntimeError("evaluate_in_worker runs in a worker started by make_pool (or given use_worker_context)")
    if observed is not None:
        _WORKER_CONTEXT.evaluator.observe_all(observed)
    return evaluate_candidate(_WORKER_CONTEXT, genotype)


def worker_lost(args: tuple[Any, ...], reason: str) -> Outcome:
    """The result of a candidate whose worker process died on every try (an executor that retries, e.g. Ray)."""
    return Outcome({"status": "error", "error": reason}, "", 0.0)


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries (without starting CUDA here)."""
    import torch
    count = torch.cuda.device_count()
    listed = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return listed[:count] if listed else [str(i) for i in range(count)]


class WorkerPool(ProcessPoolExecutor):
    """A process pool whose ``shutdown(wait=False)`` (the loop stops early: an error, SIGINT, SIGTERM) also ends
    the candidates still running, so that the process exits now rather than after their training: they are in the
    checkpoint's ``in_flight`` list and are evaluated first on resume."""

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if not wait:  # stopping early: end the running candidates, then clean up (queues, threads) as usual
            # Python 3.14 has terminate_workers(); before it, the pool's processes are only reachable here
            for process in list((getattr(self, "_processes", None) or {}).values()):
                process.terminate()
            wait, cancel_futures = True, True
        super().shutdown(wait=wait, cancel_futures=cancel_futures)


def make_pool(workers: int, factory: Callable[[], Context], devices: Sequence[str] = ()) -> ProcessPoolExecutor:
    """``devices``: GPUs to spread the workers over, one each in turn (worker k gets ``devices[k % n]``); with
    none, workers inherit this process's view of the GPUs."""
    context = multiprocessing.get_context("spawn")
    queue = None
    if devices:
        queue = context.Queue()
        for k in range(workers):
            queue.put(str(devices[k % len(devices)]))
    return WorkerPool(max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(factory, queue))
