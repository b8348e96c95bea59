"""Optimizers with parameter groups: weight decay only on weights of convs/linears (unless configured otherwise),
and an optional learning-rate multiplier for norm-layer parameters that keeps their decay per step unchanged."""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from search.training.config import ConfigError, OptimizerConfig

NORM_TYPES: tuple[type[nn.Module], ...] = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm,
                                           nn.LocalResponseNorm, nn.RMSNorm)


def norm_parameters(model: nn.Module) -> set[int]:
    """ids of the parameters that belong to normalisation layers."""
    return {id(p) for m in model.modules() if isinstance(m, NORM_TYPES) for p in m.parameters(recurse=False)}


def param_groups(model: nn.Module, cfg: OptimizerConfig) -> list[dict[str, Any]]:
    """Up to three groups: decayed weights, undecayed biases/others, and norm-layer parameters."""
    norms = norm_parameters(model)
    decayed, undecayed, normed = [], [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if id(p) in norms:
            normed.append(p)
        elif p.ndim > 1 or cfg.decay_norm_and_bias:
            decayed.append(p)
        else:
            undecayed.append(p)
    wd = cfg.weight_decay
    groups = [
        {"params": decayed, "weight_decay": wd},
        {"params": undecayed, "weight_decay": 0.0},
        # lr x scale with decay / scale: the same shrink per step, faster learning (airbench's bias_scaler)
        {"params": normed, "lr": cfg.lr * cfg.norm_lr_scale,
         "weight_decay": wd / cfg.norm_lr_scale if cfg.decay_norm_and_bias else 0.0},
    ]
    return [g for g in groups if g["params"]]


def _sgd(groups: list[dict[str, Any]], cfg: OptimizerConfig, fused: bool) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                           foreach=not fused, fused=fused or None)


def _adamw(groups: list[dict[str, Any]], cfg: OptimizerConfig, fused: bool) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,  # type: ignore[arg-type]
                             foreach=not fused, fused=fused or None)


OPTIMIZERS: dict[str, Callable[[list[dict[str, Any]], OptimizerConfig, bool], torch.optim.Optimizer]] = {
    "sgd": _sgd, "adamw": _adamw,
}


def build_optimizer(model: nn.Module, cfg: OptimizerConfig, fused: bool = False) -> torch.optim.Optimizer:
    """``fused`` (one kernel for all parameters) is worth it on CUDA when every parameter has one dtype."""
    if cfg.name not in OPTIMIZERS:
        raise ConfigError("optimizer.name", f"unknown optimizer '{cfg.name}'", hint=f"one of {sorted(OPTIMIZERS)}")
    groups = param_groups(model, cfg)
    if not groups:
        raise ConfigError("optimizer", "the model has no trainable parameters")
    for g in groups:
        g.setdefault("lr", cfg.lr)
    return OPTIMIZERS[cfg.name](groups, cfg, fused)
