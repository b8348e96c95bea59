"""Proxies from the gradient of the training loss at initialisation: grad_norm, snip (one backward pass) and ZiCo.

All run a copy of the network in train mode (batch statistics, as the references' freshly built networks do) with
the cross-entropy loss (mean over the batch) on one minibatch, and sum over the weights of every convolution and
linear layer (the layers zero-cost-nas scores).

* ``grad_norm`` (Abdelfattah et al., ICLR 2021, ``measures/grad_norm.py``): sum over layers of the Euclidean norm
  of the layer's weight gradient, sum_l ||dL/dW_l||_2.
* ``snip`` (Lee, Ajanthan & Torr, "SNIP: single-shot network pruning based on connection sensitivity", ICLR 2019;
  as a NAS proxy in Abdelfattah et al., ``measures/snip.py``): sum of |w * dL/dw|. The reference multiplies each
  weight by a mask of ones and takes |dL/dmask|; at mask = 1 that is exactly |w * dL/dw|, so no module surgery.
* ``zico`` (Li, Yang, Bhardwaj & Marculescu, "ZiCo: Zero-shot NAS via inverse Coefficient of Variation on
  Gradients", ICLR 2023; SLDGroup/ZiCo ``ZeroShotProxy/compute_zico.py``): the minibatch is cut into ``splits``
  equal parts (the reference feeds separate minibatches: two by default, ``--maxbatch 2``), one gradient per part; for
  each layer, with mean and (population) standard deviation over the parts taken per weight, the layer adds
  log(sum over weights with nonzero std of mean|g| / std(g)); layers whose sum is 0 add nothing, as in the
  reference. A network in which no layer adds anything scores -inf (the reference would give 0).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from search.proxies.base import WORST, layer_weights, scratch_copy


def _loss_backward(net: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> None:
    net.zero_grad(set_to_none=True)
    F.cross_entropy(net(inputs), targets).backward()


def loss_gradient_scores(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """``{"grad_norm": ..., "snip": ...}`` from one forward/backward pass; each is -inf when every weight
    gradient is zero (the output does not depend on the input)."""
    net = scratch_copy(model, inputs.device, train=True)
    _loss_backward(net, inputs, targets)
    norm = torch.zeros((), dtype=torch.float64, device=inputs.device)
    saliency = torch.zeros((), dtype=torch.float64, device=inputs.device)
    for _, w in layer_weights(net):
        if w.grad is not None:
            norm += w.grad.double().norm()
            saliency += (w.detach() * w.grad).double().abs().sum()
    return {"grad_norm": float(norm) if norm > 0 else WORST, "snip": float(saliency) if saliency > 0 else WORST}


def grad_norm(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """sum over conv/linear layers of ||dL/dW||_2 (see the module docstring)."""
    return loss_gradient_scores(model, inputs, targets)["grad_norm"]


def snip(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """sum over conv/linear weights of |w * dL/dw| (see the module docstring)."""
    return loss_gradient_scores(model, inputs, targets)["snip"]


def zico(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, splits: int = 2) -> float:
    """ZiCo on ``splits`` equal parts of the minibatch (see the module docstring)."""
    if splits < 2:
        raise ValueError(f"zico needs at least 2 gradients to take a standard deviation, got splits={splits}")
    if inputs.shape[0] < splits:
        raise ValueError(f"zico: a minibatch of {inputs.shape[0]} cannot be cut into {splits} parts")
    net = scratch_copy(model, inputs.device, train=True)
    per_layer: dict[str, list[torch.Tensor]] = {}
    for part_inputs, part_targets in zip(inputs.chunk(splits), targets.chunk(splits)):
        _loss_backward(net, part_inputs, part_targets)
        for name, w in layer_weights(net):
            grad = w.grad if w.grad is not None else torch.zeros_like(w)
            per_layer.setdefault(name, []).append(grad.detach().double().flatten())
    score, contributed = 0.0, False
    for grads in per_layer.values():
        stacked = torch.stack(grads)
        std = stacked.std(dim=0, correction=0)
        mean_abs = stacked.abs().mean(dim=0)
        nonzero = std > 0
        ratio_sum = float((mean_abs[nonzero] / std[nonzero]).sum())
        if ratio_sum > 0:
            score += math.log(ratio_sum)
            contributed = True
    return score if contributed else WORST
