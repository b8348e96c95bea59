"""Whole-config checks of a TrainerConfig, so a typo fails at once rather than after the data set has loaded."""
from __future__ import annotations

from typing import Collection

from search.data.augment import FLIPS, PAD_MODES
from search.training.config import ConfigError, TrainerConfig
from search.training.init import INITS
from search.training.optim import OPTIMIZERS
from search.training.precision import PRECISIONS
from search.training.schedules import SHAPES
from search.training.tta import TTA


def _one_of(key: str, value: str, choices: Collection[str]) -> None:
    if value not in choices:
        parts = key.split(".")
        what = parts[-2] if parts[-1] == "name" else parts[-1]
        raise ConfigError(key, f"unknown {what} '{value}'", hint=f"one of {', '.join(choices)}")


def check_config(cfg: TrainerConfig) -> None:
    _one_of("optimizer.name", cfg.optimizer.name, OPTIMIZERS)
    _one_of("schedule.name", cfg.schedule.name, SHAPES)
    _one_of("precision", cfg.precision, ["auto", *PRECISIONS])
    _one_of("init", cfg.init, INITS)
    _one_of("tta", cfg.tta, TTA)
    _one_of("loss_reduction", cfg.loss_reduction, ("mean", "sum"))
    if cfg.augment is not None:
        _one_of("augment.flip", cfg.augment.flip, FLIPS)
        _one_of("augment.pad_mode", cfg.augment.pad_mode, PAD_MODES)
        if cfg.augment.translate < 0 or cfg.augment.cutout < 0:
            raise ConfigError("augment", "augment.translate and augment.cutout must be >= 0")
    if cfg.batch_size < 1 or cfg.eval_batch_size < 1:
        raise ConfigError("batch_size", "batch sizes must be >= 1")
    if cfg.budget.steps is None and (cfg.budget.epochs is None or cfg.budget.epochs <= 0):
        raise ConfigError("budget", "give budget.epochs > 0 or budget.steps")
    if cfg.budget.steps is not None and cfg.budget.steps < 1:
        raise ConfigError("budget.steps", "budget.steps must be >= 1")
    if cfg.cpu_threads is not None and cfg.cpu_threads < 1:
        raise ConfigError("cpu_threads", "cpu_threads must be >= 1 (or null)")
    if min(cfg.log_every, cfg.ema.every, cfg.lookahead.every) < 1:
        raise ConfigError("log_every", "log_every, ema.every and lookahead.every must be >= 1")
    if not 0 <= cfg.drop_path < 1:
        raise ConfigError("drop_path", "drop_path must be in [0, 1) (DARTS: 0.2; 0: off)")
    if cfg.optimizer.norm_lr_scale <= 0:
        raise ConfigError("optimizer.norm_lr_scale", "norm_lr_scale must be > 0")
