"""Learning-rate schedules: a multiplier of each group's learning rate as a function of the step.

Every schedule warms up from ``start_factor`` to 1 over ``warmup`` steps, then goes to ``final_factor`` at the
last step; the shape of the way down (and of the warm-up, for one-cycle) is what the name picks.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from search.training.config import ConfigError, ScheduleConfig


def _linear(t: float) -> float:
    return t


def _cosine(t: float) -> float:
    return 0.5 * (1.0 - math.cos(math.pi * t))


def _flat(t: float) -> float:
    return 0.0


# name -> (warm-up shape, decay shape), each mapping progress in [0, 1] to the fraction of the way travelled
SHAPES: dict[str, tuple[Callable[[float], float], Callable[[float], float]]] = {
    "constant": (_linear, _flat),
    "linear": (_linear, _linear),
    "cosine": (_linear, _cosine),
    "onecycle": (_cosine, _cosine),
}


def warmup_steps(cfg: ScheduleConfig, total_steps: int) -> int:
    return int(cfg.warmup * total_steps) if cfg.warmup < 1 else int(cfg.warmup)


def lr_factor(cfg: ScheduleConfig, total_steps: int) -> Callable[[int], float]:
    """The multiplier at step ``i`` (0 .. total_steps)."""
    if cfg.name not in SHAPES:
        raise ConfigError("schedule.name", f"unknown schedule '{cfg.name}'", hint=f"one of {sorted(SHAPES)}")
    rise, fall = SHAPES[cfg.name]
    warm = min(warmup_steps(cfg, total_steps), total_steps)
    end = cfg.final_factor if cfg.name != "constant" else 1.0

    def factor(i: int) -> float:
        if i < warm:
            return cfg.start_factor + (1.0 - cfg.start_factor) * rise(i / warm)
        span = max(total_steps - warm, 1)
        return 1.0 + (end - 1.0) * fall(min(i - warm, span) / span)
    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig,
                    total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, total_steps))
