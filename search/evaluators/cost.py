"""Analytic cost of a candidate, from the compiler's passes: parameters, MACs, activation memory."""
from __future__ import annotations

from typing import Any, Sequence

from compiler.backends.summary import activation_memory_bytes
from search.evaluators.base import EvaluatorBase


class CostEvaluator(EvaluatorBase):
    """``(genotype, space) -> {params, macs, activation_mb}``; cheap, so the loop adds it to every result."""

    metric_names = ("params", "macs", "activation_mb")

    def __init__(self, batch_size: int = 1) -> None:
        self.batch_size = batch_size

    def __call__(self, genotype: Sequence[int], space: Any) -> dict[str, Any]:
        result = space.compile(genotype)
        return {"params": int(result.summary["params"]), "macs": int(result.summary["macs"]),
                "activation_mb": activation_memory_bytes(result.graph, self.batch_size) / 2**20,
                "status": "ok"}
