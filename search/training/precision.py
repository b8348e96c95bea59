"""Numeric precision modes: autocast (mixed precision, fp32 master weights) or "pure" low-precision weights with
the norm layers kept in fp32 (as airbench runs its network)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ContextManager

import torch
from torch import nn

from search.training.config import ConfigError
from search.training.optim import NORM_TYPES


@dataclass(frozen=True)
class Precision:
    name: str
    autocast: torch.dtype | None = None   # run the forward pass under torch.autocast with this dtype
    weights: torch.dtype | None = None    # cast the model's weights (and inputs) to this dtype, norms stay fp32
    grad_scaler: bool = False             # fp16 autocast needs loss scaling against underflow

    def context(self, device: torch.device) -> ContextManager[object]:
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.autocast)

    @property
    def input_dtype(self) -> torch.dtype:
        return self.weights or torch.float32

    def prepare(self, model: nn.Module) -> None:
        if self.weights is None:
            return
        model.to(self.weights)
        for module in model.modules():
            if isinstance(module, NORM_TYPES):
                module.float()


PRECISIONS: dict[str, Precision] = {p.name: p for p in (
    Precision("fp32"),
    Precision("bf16", autocast=torch.bfloat16),
    Precision("fp16", autocast=torch.float16, grad_scaler=True),
    Precision("bf16-pure", weights=torch.bfloat16),
    Precision("fp16-pure", weights=torch.float16),
)}
AUTO = {"cuda": "bf16"}   # device type -> precision for 'auto' (everything else: fp32)


def resolve_precision(name: str, device: torch.device) -> Precision:
    name = AUTO.get(device.type, "fp32") if name == "auto" else name
    if name not in PRECISIONS:
        raise ConfigError("precision", f"unknown precision '{name}'", hint=f"one of auto, {', '.join(PRECISIONS)}")
    return PRECISIONS[name]
