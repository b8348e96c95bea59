"""SynFlow: the synaptic flow of a network with absolute weights on an all-ones input (data-free).

Tanaka, Kunin, Yamins & Ganguli, "Pruning neural networks without any data by iteratively conserving synaptic
flow", NeurIPS 2020; used as a zero-cost NAS proxy by Abdelfattah, Mehrotra, Dudziak & Lane, "Zero-Cost Proxies
for Lightweight NAS", ICLR 2021 (NAS-Bench-201 CIFAR-10 Spearman 0.74).

Definition used (that of the zero-cost-nas code, ``measures/synflow.py`` with ``bn=False``): on a copy of the
network in float64, every parameter replaced by its absolute value and every batch norm by an identity, the
objective is R = 1^T f(1), the sum of the outputs for one all-ones input of the data's shape; the score is
sum over the weights w of every convolution and linear layer of |w * dR/dw|. The copy runs in eval mode
(SynFlow's own code prunes in eval mode; with batch norm removed this only switches dropout off). Biases and other
parameters take part in R but are not summed, as in the reference. The caller's model is not modified.
"""
from __future__ import annotations

import torch
from torch import nn

from search.proxies.base import WORST, layer_weights, scratch_copy, without_batchnorm


def synflow(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None = None) -> float:
    """SynFlow score of ``model``; ``inputs`` gives only the input shape and the device (the data is not used)."""
    net = without_batchnorm(scratch_copy(model, inputs.device, torch.float64, train=False))
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    ones = torch.ones((1, *inputs.shape[1:]), dtype=torch.float64, device=inputs.device)
    net(ones).sum().backward()
    total = torch.zeros((), dtype=torch.float64, device=inputs.device)
    for _, w in layer_weights(net):
        if w.grad is not None:
            total += (w.detach() * w.grad).abs().sum()
    score = float(total)
    return score if score > 0 else WORST   # no flow reaches the output: the output ignores the input
