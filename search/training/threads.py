"""``trainer.cpu_threads: auto``: how many torch threads a CPU training run gets, from the work of one batch.

torch's intra-op threads split each op; when another process holds one of the cores (a second run, a search's
other worker, a CI job) every op waits for its slowest thread. Measured with ``bench/cpu_threads.py`` on the 2-core
dev VM (BENCHMARKS.md, issue 11): resnet20 on digits trains in 4.9 s with 1 thread and 3.3 s with 2 when the machine
is idle, but 5.0 s against 12.6 s when one other process keeps a core busy (the small digits net: 0.64 s against
1.89 s); the issue's report was 13.2 s against 77.8 s. So the default trades up to 1.5x on an idle small machine for
never being 2.5-6x slower on a shared one. The rule: one thread per ``MACS_PER_THREAD`` multiply-accumulates in the
forward pass of one training batch, at least 1, at most the cores this process may run on. Small models (all of
digits, CIFAR networks at small batch sizes) get one thread; large ones (ImageNet-sized), whose ops are long enough
to keep several threads busy, all cores. Set ``trainer.cpu_threads=N`` on a machine you know to be idle.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import torch
from torch import nn

MACS_PER_THREAD = 2e9   # forward MACs of one training batch that one more thread needs to pay for itself


def available_cores() -> int:
    """CPUs this process may run on (its affinity mask, which containers and `taskset` narrow), else all."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def auto_cpu_threads(macs_per_sample: float, batch_size: int, cores: int) -> int:
    """The rule: one thread per MACS_PER_THREAD of a batch's forward pass, between 1 and ``cores``."""
    return max(1, min(cores, int(macs_per_sample * batch_size // MACS_PER_THREAD)))


def _layer_macs(module: nn.Module, output: torch.Tensor) -> int:
    """Multiply-accumulates of a convolution or linear layer's forward, from its output and weight shapes."""
    weight = module.weight
    per_output = weight[0].numel() if isinstance(module, nn.modules.conv._ConvNd) else weight.shape[1]
    return output.numel() * per_output


def forward_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one sample's forward pass in its convolutions and linear layers (where nearly all
    of a CNN's work is), from forward hooks on one zero input in eval mode: no running statistics move, no random
    numbers are drawn, the training mode is restored. About one batch-1 forward pass of time."""
    parameter = next(model.parameters(), None)
    sample = torch.zeros(1, *input_shape, device=parameter.device if parameter is not None else "cpu")
    total = [0]

    def count(module: nn.Module, inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            total[0] += _layer_macs(module, output)

    layers = [m for m in model.modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    hooks = [m.register_forward_hook(count) for m in layers]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(sample)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return total[0]


def resolve_cpu_threads(setting: Any, model: nn.Module, input_shape: Sequence[int], batch_size: int,
                        cores: int | None = None) -> int | None:
    """The threads to train with on the CPU: ``setting`` when it is a number, None (leave torch's) for null, and
    the rule's answer for ``auto``."""
    if setting != "auto":
        return setting
    return auto_cpu_threads(forward_macs(model, input_shape), batch_size, cores or available_cores())
