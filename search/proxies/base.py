"""What every proxy shares: a scratch copy of the caller's model, its weighted layers, and the "worst" score.

Proxies never touch the caller's model: each works on a deep copy moved to the inputs' device (weights, buffers,
mode, gradients and the global RNG state of the original stay as they were). A network that gives a proxy nothing
to measure — its output does not depend on its input (a NAS-Bench-201 cell whose every path is `none`), so all
weight gradients vanish or the kernel is singular — scores ``WORST`` (-inf): below every real score, never a crash.
"""
from __future__ import annotations

import copy
import math
from typing import Iterator

import torch
from torch import nn

WORST = -math.inf   # the score of a network a proxy cannot tell anything about

# The layers whose weights the pruning-at-init literature scores (zero-cost-nas: nn.Conv2d and nn.Linear).
WEIGHTED_LAYERS = (nn.modules.conv._ConvNd, nn.Linear)


def scratch_copy(model: nn.Module, device: torch.device, dtype: torch.dtype | None = None,
                 train: bool = True) -> nn.Module:
    """A deep copy of ``model`` on ``device`` (and ``dtype``), in train or eval mode, with no gradients."""
    net = copy.deepcopy(model).to(device)
    if dtype is not None:
        net = net.to(dtype)
    for p in net.parameters():
        p.grad = None
        p.requires_grad_(True)
    return net.train(train)


def layer_weights(net: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(module name, weight) of every convolution and linear layer, in module order; a module reached twice
    (shared) is listed once, as ``named_modules`` does."""
    for name, module in net.named_modules():
        if isinstance(module, WEIGHTED_LAYERS) and isinstance(getattr(module, "weight", None), torch.Tensor):
            yield name, module.weight


def without_batchnorm(net: nn.Module) -> nn.Module:
    """Replace every batch-norm module of ``net`` (in place) by an identity, as zero-cost-nas does for synflow
    (its ``get_prunable_copy(bn=False)``)."""
    for parent in list(net.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(parent, child_name, nn.Identity())
    return net


def finite_or_worst(value: float) -> float:
    """``value`` as a float; NaN (an undefined score: a degenerate network) and infinity (an overflow, e.g. synflow's
    product in a deep network) become ``WORST``: a score that is no number ranks last, in a run and after a resume
    alike (JSON holds no infinity: the run directory stores WORST as null)."""
    value = float(value)
    return value if math.isfinite(value) else WORST
