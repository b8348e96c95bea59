"""Candidates on a Ray cluster (``search.executor=ray``): the local pool's ``concurrent.futures.Executor`` interface,
backed by one Ray actor per worker.

Each actor builds the evaluation context once, from the same picklable factory the local pool's workers use, so the
data set reaches a worker once (when its actor starts), not once per candidate. ``submit(fn, *args)`` runs
``fn(*args)`` in an idle actor's process and returns a standard Future; the loop records results in proposal order
as it does with the local pool, so a run depends only on the seed and the number of workers, never on where or
how fast candidates run.

A worker process that dies mid-candidate (killed for memory, a node lost) is restarted by Ray (its context rebuilt)
and the candidate retried once (``max_task_retries=1``); when it dies again the candidate is recorded as failed with
Ray's reason, and the actor, restarted again, takes the next candidate. Journal and checkpoint stay in the driver.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
from concurrent.futures import Executor, Future
from typing import Any, Callable

from search.ray_config import RayConfig, memory_bytes

log = logging.getLogger("search")

TASK_RETRIES = 1                      # a candidate whose worker dies is run once more, then recorded as failed


class _Worker:
    """The Ray actor: this process's evaluation context, built once (and again when Ray restarts the actor)."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        from search.parallel import use_worker_context
        use_worker_context(factory())  # what ``evaluate_in_worker`` uses, as in the local pool's workers

    def ready(self) -> int:
        return os.getpid()

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return fn(*args, **kwargs)


class RayExecutor(Executor):
    """``workers`` Ray actors, one candidate each at a time. ``lost(args, reason)`` gives the result of a call
    whose worker died twice (the search: a failed candidate)."""

    def __init__(self, workers: int, factory: Callable[[], Any], config: RayConfig,
                 lost: Callable[[tuple[Any, ...], str], Any]) -> None:
        import ray

        self._ray, self._lost = ray, lost
        self._started = False
        if not ray.is_initialized():
            ray.init(**init_arguments(config, workers))
            self._started = True  # ours: shut down with the run
        options: dict[str, Any] = {"num_cpus": config.num_cpus, "num_gpus": config.num_gpus,
                                   "max_restarts": -1, "max_task_retries": TASK_RETRIES}
        if config.memory is not None:
            options["memory"] = memory_bytes(config.memory)
        actor = ray.remote(**options)(_Worker)
        self._actors = [actor.remote(factory) for _ in range(workers)]
        self._idle: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()
        self._running: dict[Any, Future] = {}  # ObjectRef -> the Future handed out
        self._closed = False
        try:
            pids = ray.get([a.ready.remote() for a in self._actors])  # a context that cannot be built fails here
        except BaseException:
            self.shutdown(wait=False)
            raise
        log.info("ray: %d worker(s) ready (pids %s) on %s", workers, ", ".join(map(str, pids)),
                 ray.get_runtime_context().gcs_address)
        for a in self._actors:
            self._idle.put(a)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Run ``fn(*args, **kwargs)`` in an idle worker (waiting for one if all are busy)."""
        if self._closed:
            raise RuntimeError("submit after shutdown")
        actor = self._idle.get()
        future: Future = Future()
        future.set_running_or_notify_cancel()
        ref = actor.call.remote(fn, args, kwargs)
        with self._lock:
            self._running[ref] = future
        ref.future().add_done_callback(lambda done: self._finish(ref, actor, args, done))
        return future

    def _finish(self, ref: Any, actor: Any, args: tuple[Any, ...], done: Future) -> None:
        """Runs in Ray's thread when a call ends: the worker is free again, and the Future gets the result (or, when
        the worker died on both tries, ``lost``'s)."""
        with self._lock:
            future = None if self._closed else self._running.pop(ref, None)
        self._idle.put(actor)  # the actor's next call is queued behind Ray's restart of it, if it died
        if future is None or future.done():
            return
        try:
            future.set_result(done.result())
        except self._ray.exceptions.RayActorError as err:  # the worker process died, on the retry too
            reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'the worker died'}"
            log.warning("a worker died twice evaluating %s; recorded as failed (%s)", args[:1], reason)
            future.set_result(self._lost(args, f"the worker process died while evaluating it, and again when it "
                                               f"was retried ({reason})"))
        except BaseException as err:  # an exception raised by fn itself is the caller's, as with a local pool
            future.set_exception(err)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """``wait``: the calls in flight end first; else they are ended now (the loop stops early: they are in the
        checkpoint's ``in_flight`` list and run first on resume)."""
        if self._closed:
            return
        if wait:
            with self._lock:
                pending = list(self._running.values())
            for future in pending:
                future.exception()  # waits; a failure was already handed to whoever holds the Future
        with self._lock:
            self._closed = True  # from here on, a call that ends (its actor killed below) is nobody's result
            for future in self._running.values():
                if not future.done():
                    future.set_exception(RuntimeError("the executor shut down before this call ended"))
            self._running.clear()
        for actor in self._actors:
            self._ray.kill(actor, no_restart=True)
        if self._started:
            self._ray.shutdown()


def init_arguments(config: RayConfig, workers: int) -> dict[str, Any]:
    """``ray.init``'s arguments: join ``address``, or start a local instance big enough for every worker (as the
    local pool does, workers beyond the cores share them rather than wait)."""
    arguments: dict[str, Any] = {"include_dashboard": False, "configure_logging": False}
    if config.runtime_env:
        arguments["runtime_env"] = dict(config.runtime_env)
    if config.address:
        return {**arguments, "address": str(config.address)}
    return {**arguments, "num_cpus": max(os.cpu_count() or 1, int(-(-workers * config.num_cpus // 1)))}
