"""NASWOT: how differently the ReLUs of an untrained network switch for the images of one minibatch.

Mellor, Turner, Storkey & Crowley, "Neural Architecture Search without Training", ICML 2021 (the second version
of the paper; the first, the Jacobian covariance, is ``jacob_cov``). Reference code: BayesWatch/nas-without-training,
``score_networks.py`` with ``--score hook_logdet`` (batch 128).

Definition used: every ReLU call of the forward pass gives each image a binary code c (1 where the ReLU's input is
positive, over all its units); for a ReLU with U units the kernel gains c_i.c_j + (1 - c_i).(1 - c_j) =
U - Hamming(c_i, c_j). K sums this over all ReLU calls; the score is log|det K| (``slogdet``). The network runs in
train mode (batch statistics), as the reference's freshly built networks do. ReLUs are found by intercepting the
relu functions (``nn.ReLU``, ``F.relu``, ``torch.relu``, ``Tensor.relu`` and their in-place forms), so a ReLU module
used twice counts twice, like the reference's forward hooks. A network without ReLUs, or whose codes cannot tell
two images apart, has a singular K and scores -inf.

Only the ReLUs the network runs count. A NAS-Bench-201 cell whose branch is discarded (it reaches the output only
through `none` edges) still computes that branch in the reference's models, and its ReLUs enter K there; the
compiler removes such dead branches (same function), so they do not count here. The other proxies are unaffected
(a discarded branch gets zero gradient).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from search.proxies.base import WORST, scratch_copy

RELU_FUNCTIONS: frozenset[Callable[..., Any]] = frozenset(
    {F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_})

# Entries of one ReLU's kernel are integers up to its unit count; float32 holds them exactly below 2**24.
_EXACT_FLOAT32 = 2 ** 24


class ActivationKernel(TorchFunctionMode):
    """Accumulates K = sum over ReLU calls of (U + s s^T) / 2, s = 2c - 1 in {-1, +1}: the same as
    c c^T + (1 - c)(1 - c)^T with one matrix product instead of two."""

    def __init__(self, batch: int, device: torch.device) -> None:
        super().__init__()
        self.kernel = torch.zeros((batch, batch), dtype=torch.float64, device=device)

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func in RELU_FUNCTIONS and args and isinstance(args[0], torch.Tensor):
            x = args[0].detach()
            units = x[0].numel()
            dtype = torch.float32 if units < _EXACT_FLOAT32 else torch.float64
            signs = (x.reshape(x.shape[0], -1) > 0).to(dtype) * 2 - 1   # before an in-place relu changes x
            self.kernel += ((signs @ signs.T).to(torch.float64) + units) / 2
        return func(*args, **(kwargs or {}))


def kernel_logdet(kernel: torch.Tensor) -> float:
    """log|det K|, or -inf for a singular K (the reference returns slogdet's log-determinant whatever the sign)."""
    sign, logdet = torch.linalg.slogdet(kernel)
    return float(logdet) if float(sign) != 0 else WORST


def naswot(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None = None) -> float:
    """log|det K| of the ReLU code kernel of ``model`` on ``inputs`` (the targets are not used)."""
    net = scratch_copy(model, inputs.device, train=True)
    recorder = ActivationKernel(inputs.shape[0], inputs.device)
    with torch.no_grad(), recorder:
        net(inputs)
    return kernel_logdet(recorder.kernel)
