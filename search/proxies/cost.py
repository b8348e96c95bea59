"""Baselines that need no forward pass: the parameter count and the multiply-accumulates of the compiled network.

Both come from the compiler's cost analysis (``CompileResult.summary``: the ``AnalyseCosts`` pass, the figures
``summary.json`` holds), not recounted here. ZiCo (ICLR 2023) notes that the parameter count is a strong
baseline on NAS-Bench-201 that most zero-cost proxies fail to beat.
"""
from __future__ import annotations

from typing import Any, Mapping


def _figure(summary: Mapping[str, Any], key: str) -> float:
    if key not in summary:
        raise ValueError(f"the compile summary has no {key!r}; pass CompileResult.summary")
    return float(summary[key])


def params(summary: Mapping[str, Any]) -> float:
    """Trainable parameters of the compiled network."""
    return _figure(summary, "params")


def macs(summary: Mapping[str, Any]) -> float:
    """Multiply-accumulates per sample of the compiled network."""
    return _figure(summary, "macs")
