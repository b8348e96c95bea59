"""Jacobian covariance: how correlated the input gradients of different images are at initialisation.

Mellor, Turner, Storkey & Crowley, "Neural Architecture Search without Training", arXiv v1 (2020); as a zero-cost
proxy in Abdelfattah et al., ICLR 2021 (NAS-Bench-201 CIFAR-10 Spearman 0.73), code ``measures/jacob_cov.py``.

Definition used (that code's): in train mode (batch statistics), J = d(sum of all outputs)/d(inputs), one row per
image (flattened); C = the correlation matrix of the rows (``corrcoef``); with its eigenvalues v and k = 1e-5,
score = -sum(log(v + k) + 1 / (v + k)). The reference takes ``numpy.linalg.eig``; C is symmetric, so this uses the
symmetric solver (same eigenvalues, real by construction), in float64. An image whose Jacobian row is constant
(e.g. the output does not depend on the input) makes C undefined: the score is then -inf, where the reference
gives NaN.

The forward pass it needs is exactly NASWOT's (same copy, train mode, same minibatch), so
``jacobian_and_codes_scores`` reads NASWOT's ReLU codes during it: both proxies for the price of one.
"""
from __future__ import annotations

import torch
from torch import nn

from search.proxies.base import WORST, finite_or_worst, scratch_copy
from search.proxies.naswot import ActivationKernel, kernel_logdet

K = 1e-5


def jacobian_score(jacobian: torch.Tensor, k: float = K) -> float:
    """The score of a (batch, features) Jacobian."""
    corr = torch.corrcoef(jacobian.double())
    if not bool(torch.isfinite(corr).all()):
        return WORST
    eigenvalues = torch.linalg.eigvalsh(corr)
    return finite_or_worst(-float((torch.log(eigenvalues + k) + 1.0 / (eigenvalues + k)).sum()))


def jacobian_and_codes_scores(model: nn.Module, inputs: torch.Tensor) -> dict[str, float]:
    """``{"jacob_cov": ..., "naswot": ...}`` from one forward and one backward pass."""
    if inputs.shape[0] < 2:
        raise ValueError("jacob_cov needs a minibatch of at least 2 images")
    net = scratch_copy(model, inputs.device, train=True)
    x = inputs.detach().clone().requires_grad_(True)
    recorder = ActivationKernel(inputs.shape[0], inputs.device)
    with recorder:
        y = net(x)
    naswot = kernel_logdet(recorder.kernel)
    if not y.requires_grad:   # no parameter and no input reaches the output
        return {"jacob_cov": WORST, "naswot": naswot}
    y.backward(torch.ones_like(y))
    jacob = WORST if x.grad is None else jacobian_score(x.grad.reshape(x.shape[0], -1))
    return {"jacob_cov": jacob, "naswot": naswot}


def jacob_cov(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None = None) -> float:
    """Jacobian-covariance score of ``model`` on ``inputs`` (the targets are not used)."""
    return jacobian_and_codes_scores(model, inputs)["jacob_cov"]
