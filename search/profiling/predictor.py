"""Latency prediction from a per-op lookup table, and its error against measured latency.

On the CPU ops run one after another: a model's latency is the cost of calling it plus, for every op node of its
IR, the op's isolated latency minus that call cost: ``overhead + sum(op_ms - overhead)``.

On a GPU the host issues kernels while the device runs earlier ones. Measured back to back (as the harness and
torch.utils.benchmark do), a network takes as long as the slower of the two streams: ``max(host, device)``, each
summed as above from the table's ``host_ms`` and ``device_ms``. Summing each op's isolated latency instead
(which is already the max of the two for that op) counts the overlap wrongly once some ops are launch-bound and
others compute-bound: on an H200 at batch 64 that sum overestimated MobileNet-like networks by 20 %.

A table may also carry one scale per batch size, fitted on whole networks measured on the same machine
(``python -m compiler task=profile_ops`` does this and reports the error on networks left out of the fit); the
default prediction applies it.

Cheap enough to score thousands of candidates.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from compiler.api import CompileResult
from compiler.ir.graph import Graph
from compiler.backends.runtime.measure import Settings
from search.profiling.optable import OVERHEAD, LatencyTable, fill_table, op_key
from search.profiling.profiler import as_compiled, make_settings


class MissingEntries(LookupError):
    """The table has no measurement for some ops of the graph."""


MODES = ("auto", "sum", "overlap")


def predict_ms(table: LatencyTable, graph: Graph, batch_size: int, mode: str = "auto",
               calibrated: bool = True) -> float:
    """Predicted latency (ms) of ``graph`` at ``batch_size``. ``mode``: "sum" of isolated latencies, "overlap"
    (max of summed host and device times; needs a table measured on a GPU), or "auto": overlap where the table has
    host/device times, else sum. The table's calibration scale (fitted for "auto") applies to "auto" only."""
    if mode not in MODES:
        raise ValueError(f"prediction mode must be one of {', '.join(MODES)}, got {mode!r}")
    keys = [OVERHEAD] + [op_key(n) for n in graph.nodes if n.op != "input"]
    names = ["the empty-model overhead"] + [f"{n.name} ({n.op})" for n in graph.nodes if n.op != "input"]
    entries = [table.entry(k, batch_size) for k in keys]
    missing = [name for name, e in zip(names, entries) if e is None]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise MissingEntries(f"the latency table has no batch-{batch_size} entry for {len(missing)} op(s) of "
                             f"'{graph.name}': {shown}; build it for this model with `python -m compiler "
                             f"task=profile_ops task.archs=[FILE]` or use LatencyPredictor(measure_missing=True)")
    split = all("host_ms" in e and "device_ms" in e for e in entries)
    if mode == "overlap" and not split:
        raise ValueError("overlap prediction needs host_ms and device_ms in every entry: a table measured on a GPU")
    if mode == "sum" or not split:
        raw = _chain([e["ms"] for e in entries])
    else:
        raw = max(_chain([e["host_ms"] for e in entries]), _chain([e["device_ms"] for e in entries]))
    scale = table.calibration.get(str(batch_size), 1.0) if calibrated and mode == "auto" else 1.0
    return scale * raw


def _chain(costs: Sequence[float]) -> float:
    """One model call's cost: the call overhead (first) once, plus each op's cost beyond the overhead it was
    measured with."""
    overhead, ops = costs[0], costs[1:]
    return overhead + sum(c - overhead for c in ops)


class LatencyPredictor:
    """``metrics(arch) -> {'latency_ms': predicted}``, the same interface as ``Profiler.metrics``.

    With ``measure_missing`` it measures ops the table lacks (on this machine, with the table's settings) and,
    given ``save_to``, keeps the grown table there.
    """

    metric_names = ("latency_ms",)  # what ``metrics`` reports

    def __init__(self, table: LatencyTable | str | Path, batch_size: int = 1, measure_missing: bool = False,
                 settings: Settings | None = None, save_to: str | Path | None = None, mode: str = "auto",
                 calibrated: bool = True, **settings_overrides: object):
        if mode not in MODES:
            raise ValueError(f"prediction mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.table = table if isinstance(table, LatencyTable) else LatencyTable.load(table)
        self.batch_size = batch_size
        self.mode = mode
        self.calibrated = calibrated
        self.measure_missing = measure_missing
        self.settings = make_settings(settings, **settings_overrides) if measure_missing else None
        if self.settings is not None:
            self.table.check_compatible(self.settings)
        self.save_to = save_to

    @property
    def measures_time(self) -> bool:
        """Whether it times anything (ops missing from its table) while a search runs."""
        return self.measure_missing

    def predict(self, arch: CompileResult | Graph) -> float:
        graph = arch.graph if isinstance(arch, CompileResult) else as_compiled(arch).graph
        if self.settings is not None and fill_table(self.table, [graph], [self.batch_size], self.settings):
            if self.save_to is not None:
                self.table.save(self.save_to)
        return predict_ms(self.table, graph, self.batch_size, self.mode, self.calibrated)

    def metrics(self, arch: CompileResult | Graph) -> dict[str, float]:
        return {"latency_ms": self.predict(arch)}

    __call__ = metrics


# ---- error of the prediction -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ErrorStats:
    n: int
    mape: float            # mean absolute percentage error, %
    median_ape: float      # %
    max_ape: float         # %
    mean_signed: float     # mean signed percentage error, % (> 0: the predictor overestimates)
    kendall_tau: float     # rank agreement (what a search needs most), -1..1

    def line(self) -> str:
        return (f"n={self.n}  MAPE {self.mape:.1f} %  median APE {self.median_ape:.1f} %  max APE "
                f"{self.max_ape:.1f} %  bias {self.mean_signed:+.1f} %  Kendall tau {self.kendall_tau:.3f}")


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-a (pairs tied in either sequence count as neither concordant nor discordant)."""
    n = len(a)
    if n < 2:
        return math.nan
    score = 0
    for i in range(n):
        for j in range(i + 1, n):
            score += int(math.copysign(1, a[i] - a[j]) * math.copysign(1, b[i] - b[j])) \
                if a[i] != a[j] and b[i] != b[j] else 0
    return score / (n * (n - 1) / 2)


def error_stats(predicted: Sequence[float], measured: Sequence[float]) -> ErrorStats:
    if len(predicted) != len(measured) or not measured:
        raise ValueError("need equally many predicted and measured latencies, at least one")
    signed = [100.0 * (p - m) / m for p, m in zip(predicted, measured)]
    absolute = sorted(abs(e) for e in signed)
    mid = len(absolute) // 2
    median = absolute[mid] if len(absolute) % 2 else (absolute[mid - 1] + absolute[mid]) / 2
    return ErrorStats(len(signed), sum(absolute) / len(absolute), median, absolute[-1],
                      sum(signed) / len(signed), kendall_tau(predicted, measured))


# ---- calibration on whole networks ----------------------------------------------------------------------------
def fit_scale(predicted: Sequence[float], measured: Sequence[float]) -> float:
    """The one factor that best maps predictions onto measurements: the median ratio (robust to a few outliers)."""
    if len(predicted) != len(measured) or not measured:
        raise ValueError("need equally many predicted and measured latencies, at least one")
    ratios = sorted(m / p for p, m in zip(predicted, measured))
    mid = len(ratios) // 2
    return ratios[mid] if len(ratios) % 2 else (ratios[mid - 1] + ratios[mid]) / 2


def held_out_calibration(predicted: Sequence[float], measured: Sequence[float]) -> ErrorStats:
    """Error of the calibrated predictor on networks left out of the fit: two folds (even / odd positions), each
    scaled by the factor fitted on the other."""
    if len(measured) < 4:
        raise ValueError("held-out calibration needs at least four networks")
    scaled = list(predicted)
    for fold in (0, 1):
        other = [i for i in range(len(measured)) if i % 2 != fold]
        scale = fit_scale([predicted[i] for i in other], [measured[i] for i in other])
        for i in range(fold, len(measured), 2):
            scaled[i] = scale * predicted[i]
    return error_stats(scaled, measured)
