"""Weight initialisations applied by the trainer before training (on top of PyTorch's defaults)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def _default(model: nn.Module) -> None:
    """Keep PyTorch's initialisation."""


@torch.no_grad()
def _dirac(model: nn.Module) -> None:
    """Each conv's first min(in, out) filters become identity maps (a centred 1 on their own channel), the rest keep
    the default initialisation, and conv biases start at 0: a deep plain network starts close to the identity."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and module.groups == 1:
            weight = module.weight
            nn.init.dirac_(weight[:weight.shape[1]])
            if module.bias is not None:
                module.bias.zero_()


INITS: dict[str, Callable[[nn.Module], None]] = {"default": _default, "dirac": _dirac}
