"""Will the supernet fit? Its parameter count and a training-memory estimate, checked before any training.

The estimate is analytic (from the compiled supernet IR): weights, their gradients and SGD momentum (three copies;
six with the second-order step's virtual weights), plus every activation kept for the backward pass
(``compiler.backends.summary.activation_memory_bytes``, an upper bound that counts each fresh tensor once).
Measured on an H200 (bench/darts_memory.py): 3-8 % above the real peak for the NAS-Bench-201 and DARTS supernets at
paper size, batch 32-128; CUDA's own workspaces (about 60-65 MiB) are not counted. With one sampled path per
step (GDAS) only one option of each decision keeps activations: the estimate takes each decision's largest.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from compiler.backends.summary import activation_memory_bytes
from compiler.supernet import Supernet
from search.darts.config import DartsConfigError

MIB = 2 ** 20


@dataclass(frozen=True)
class MemoryEstimate:
    params: int
    arch_params: int
    batch_size: int
    weights_mb: float          # weights, gradients and optimizer state
    activations_mb: float      # saved for backward, one forward/backward at a time

    @property
    def total_mb(self) -> float:
        return self.weights_mb + self.activations_mb

    def line(self) -> str:
        return (f"{self.params:,} weights, {self.arch_params} architecture logits; estimated training "
                f"memory at batch {self.batch_size}: {self.total_mb:,.1f} MiB (weights, gradients and momentum "
                f"{self.weights_mb:,.1f} MiB, activations {self.activations_mb:,.1f} MiB)")


def one_path_activation_elements(supernet: Supernet) -> int:
    """Fresh activation elements per sample when one option of each decision runs: everything outside the
    options, plus each decision's largest option (summed over the places it occurs; nested options count with
    the first decision that guards them)."""
    shared = 0
    per_option: dict[tuple[int, int], int] = {}
    for node in supernet.graph.nodes:
        if not supernet.registry[node.op].fresh_output:
            continue
        guard = node.meta.get("guard", ())
        if guard:
            per_option[guard[0]] = per_option.get(guard[0], 0) + math.prod(node.shape)
        else:
            shared += math.prod(node.shape)
    largest: dict[int, int] = {}
    for (d, _), elements in per_option.items():
        largest[d] = max(largest.get(d, 0), elements)
    return shared + sum(largest.values())


def estimate(supernet: Supernet, batch_size: int, order: int = 1, one_path: bool = False) -> MemoryEstimate:
    params = supernet.params
    copies = 3 if order == 1 else 6
    activations = (one_path_activation_elements(supernet) * batch_size * 4 if one_path
                   else activation_memory_bytes(supernet.graph, batch_size))
    return MemoryEstimate(params, sum(len(r.options) for r in supernet.relaxed), batch_size,
                          copies * params * 4 / MIB, activations / MIB)


def available_mb(device: torch.device) -> float | None:
    """Free memory on ``device`` (CUDA: the driver's figure; CPU: the system's available physical pages)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] / MIB
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / MIB
    except (ValueError, OSError, AttributeError):  # not Linux: no cheap figure, no check
        return None


def check_memory(est: MemoryEstimate, limit: float | str | None, device: torch.device) -> float | None:
    """The limit applied (MiB), or None; raises a clear error when the estimate exceeds it."""
    if limit is None:
        return None
    where = "the configured limit"
    if limit == "auto":
        limit = available_mb(device)
        where = f"the memory available on {device.type}"
        if limit is None:
            return None
    if est.total_mb > float(limit):
        raise DartsConfigError(
            "memory_limit_mb",
            f"the supernet would need about {est.total_mb:,.0f} MiB to train at batch {est.batch_size} "
            f"({est.params:,} weights: {est.weights_mb:,.0f} MiB with gradients and momentum; activations "
            f"{est.activations_mb:,.0f} MiB), more than {where} ({float(limit):,.0f} MiB)",
            hint="lower search.batch_size, shrink the space (e.g. space.params.channels or layers), fix some "
                 "decisions with search.fixed, or raise search.memory_limit_mb (null: no check)")
    return float(limit)
