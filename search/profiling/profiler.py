"""The in-process profiler a search uses: the harness's measurement on a built model, with a result cache.

    profiler = Profiler(device="cpu", batch_sizes=(1,), cache="build/profile_cache.sqlite")
    profiler.metrics(compile_file("examples/resnet18.arch"))   # {'latency_ms': ..., 'peak_mem_mb': ..., ...}

Measurements run in this process with the exact code the generated profile.py embeds (``measure.py``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from compiler.api import CompileResult, compile_graph
from compiler.ir.graph import Graph
from search.profiling.cache import ProfileCache, architecture_fingerprint, cache_key
from compiler.backends.runtime.measure import Settings, profile_module


class MeasurementError(RuntimeError):
    """A candidate could not be measured (e.g. out of memory at the asked batch size): a failed evaluation."""


def make_settings(settings: Settings | None = None, **overrides: Any) -> Settings:
    """Settings from keyword values as a config gives them (lists become tuples)."""
    if "batch_sizes" in overrides:
        overrides["batch_sizes"] = tuple(int(b) for b in overrides["batch_sizes"])
    base = settings or Settings()
    return Settings(**{**base.__dict__, **overrides})


def as_compiled(arch: CompileResult | Graph) -> CompileResult:
    return arch if isinstance(arch, CompileResult) else compile_graph(arch)


class Profiler:
    """Measures compiled architectures and remembers every report under (architecture, device, settings)."""

    measures_time = True  # its figures need the machine to itself (no parallel training beside it)
    metric_names = ("latency_ms", "latency_p90_ms", "throughput", "peak_mem_mb")  # what ``metrics`` reports

    def __init__(self, settings: Settings | None = None, cache: ProfileCache | str | Path | None = None,
                 **settings_overrides: Any) -> None:
        self.settings = make_settings(settings, **settings_overrides)
        self.cache = cache if isinstance(cache, ProfileCache) else ProfileCache(cache)
        self.measured = 0  # how many reports this profiler actually measured (not served from the cache)

    def profile(self, arch: CompileResult | Graph) -> dict[str, Any]:
        """The full report (as profile.py writes it) plus ``cached``: whether it came from the cache."""
        result = as_compiled(arch)
        key = cache_key(result.graph, self.settings)
        cached = self.cache.get(key)
        if cached is not None:
            return {**cached, "cached": True}
        shapes: Sequence[Sequence[int]] = [n.shape for n in result.graph.inputs]
        report = profile_module(result.build(), shapes, self.settings, name=result.graph.name)
        report["architecture"] = architecture_fingerprint(result.graph)
        self.measured += 1
        self.cache.put(key, report)
        return {**report, "cached": False}

    def metrics(self, arch: CompileResult | Graph, batch_size: int | None = None) -> dict[str, float]:
        """Objective values at one batch size (default: the first configured): latency_ms (median),
        latency_p90_ms, throughput (samples/s) and peak_mem_mb. Raises MeasurementError on out-of-memory."""
        report = self.profile(arch)
        wanted = batch_size if batch_size is not None else self.settings.batch_sizes[0]
        row = next((r for r in report["results"] if r["batch_size"] == wanted), None)
        if row is None:
            raise ValueError(f"batch size {wanted} is not among the profiled ones {list(self.settings.batch_sizes)}")
        if "error" in row:
            raise MeasurementError(f"{report['model']} at batch size {wanted}: {row['error']}")
        return {"latency_ms": row["median_ms"], "latency_p90_ms": row["p90_ms"], "throughput": row["throughput"],
                "peak_mem_mb": row["peak_mem_mb"]}

    __call__ = metrics
