"""Latency prediction from a per-op lookup table, and its error against measured latency.

A model's latency is predicted as the cost of calling it plus, for every op node of its IR, the op's isolated
latency minus that call cost: ``overhead + sum(op_ms - overhead)``. Cheap enough to score thousands of candidates.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from compiler.api import CompileResult
from compiler.ir.graph import Graph
from compiler.profiling.measure import Settings
from compiler.profiling.optable import OVERHEAD, LatencyTable, fill_table, op_key
from compiler.profiling.profiler import as_compiled, make_settings


class MissingEntries(LookupError):
    """The table has no measurement for some ops of the graph."""


def predict_ms(table: LatencyTable, graph: Graph, batch_size: int) -> float:
    overhead = table.overhead(batch_size)
    missing: list[str] = [] if overhead is not None else [OVERHEAD]
    total = overhead or 0.0
    for node in graph.nodes:
        if node.op == "input":
            continue
        ms = table.get(op_key(node), batch_size)
        if ms is None:
            missing.append(f"{node.name} ({node.op})")
            continue
        total += ms - (overhead or 0.0)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise MissingEntries(f"the latency table has no batch-{batch_size} entry for {len(missing)} op(s) of "
                             f"'{graph.name}': {shown}; build it for this model with `python -m compiler "
                             f"task=profile_ops task.archs=[FILE]` or use LatencyPredictor(measure_missing=True)")
    return total


class LatencyPredictor:
    """``metrics(arch) -> {'latency_ms': predicted}``, the same interface as ``Profiler.metrics``.

    With ``measure_missing`` it measures ops the table lacks (on this machine, with the table's settings) and,
    given ``save_to``, keeps the grown table there.
    """

    def __init__(self, table: LatencyTable | str | Path, batch_size: int = 1, measure_missing: bool = False,
                 settings: Settings | None = None, save_to: str | Path | None = None, **settings_overrides: object):
        self.table = table if isinstance(table, LatencyTable) else LatencyTable.load(table)
        self.batch_size = batch_size
        self.measure_missing = measure_missing
        self.settings = make_settings(settings, **settings_overrides) if measure_missing else None
        if self.settings is not None:
            self.table.check_compatible(self.settings)
        self.save_to = save_to

    def predict(self, arch: CompileResult | Graph) -> float:
        graph = arch.graph if isinstance(arch, CompileResult) else as_compiled(arch).graph
        if self.settings is not None and fill_table(self.table, [graph], [self.batch_size], self.settings):
            if self.save_to is not None:
                self.table.save(self.save_to)
        return predict_ms(self.table, graph, self.batch_size)

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
