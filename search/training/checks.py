"""Whole-config checks of a TrainerConfig, so a typo or an impossible value fails at once rather than after the data
set has loaded (or as a traceback from inside torch). Types are checked by the schema; these are the ranges.

``trainer_config`` (and ``trainer_with_overrides``) build a checked TrainerConfig from a Hydra node. They live here,
not in config.py, because the registries the checks read (optimizers, schedules, precisions, ...) import config.py.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Collection, Mapping

from omegaconf import DictConfig, OmegaConf

from compiler.config_values import SEED_MAX, check_fields
from search.data.augment import FLIPS, PAD_MODES
from search.training.config import ConfigError, TrainerConfig
from search.training.init import INITS
from search.training.optim import OPTIMIZERS
from search.training.precision import PRECISIONS
from search.training.schedules import SHAPES
from search.training.tta import TTA
from search.structured import plain, structured

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile's
DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def _one_of(key: str, value: str, choices: Collection[str]) -> None:
    if value not in choices:
        parts = key.split(".")
        what = parts[-2] if parts[-1] == "name" else parts[-1]
        raise ConfigError(key, f"unknown {what} '{value}'", hint=f"one of {', '.join(choices)}")


def _ranges(cfg: TrainerConfig) -> list[tuple[str, bool, str]]:
    """(key, holds, what it must be) for every numeric option."""
    opt, sched = cfg.optimizer, cfg.schedule
    epochs, steps = cfg.budget.epochs, cfg.budget.steps
    threads = cfg.cpu_threads
    return [
        ("seed", 0 <= cfg.seed <= SEED_MAX, "an integer from 0 to 4294967295"),
        ("cpu_threads", threads is None or threads == "auto" or (isinstance(threads, int)
                                                                  and not isinstance(threads, bool) and threads >= 1),
         "auto, a number of threads >= 1, or null (leave torch's setting)"),
        ("budget.epochs", epochs is None or epochs > 0, "> 0 (or null with budget.steps)"),
        ("budget", steps is not None or epochs is not None, "given: budget.epochs > 0 or budget.steps"),
        ("budget.steps", steps is None or steps >= 1, ">= 1 (or null: budget.epochs decides)"),
        ("batch_size", cfg.batch_size >= 1, ">= 1"),
        ("eval_batch_size", cfg.eval_batch_size >= 1, ">= 1"),
        ("optimizer.lr", opt.lr > 0, "> 0"),
        ("optimizer.momentum", 0 <= opt.momentum < 1, "in [0, 1)"),
        ("optimizer.betas", len(opt.betas) == 2 and all(0 <= b < 1 for b in opt.betas), "two numbers in [0, 1)"),
        ("optimizer.eps", opt.eps > 0, "> 0"),
        ("optimizer.weight_decay", opt.weight_decay >= 0, ">= 0"),
        ("optimizer.norm_lr_scale", opt.norm_lr_scale > 0, "> 0"),
        ("schedule.warmup", sched.warmup >= 0, ">= 0 (a fraction of the steps if < 1, else a number of steps)"),
        ("schedule.start_factor", sched.start_factor >= 0, ">= 0"),
        ("schedule.final_factor", sched.final_factor >= 0, ">= 0"),
        ("label_smoothing", 0 <= cfg.label_smoothing < 1, "in [0, 1)"),
        ("drop_path", 0 <= cfg.drop_path < 1, "in [0, 1) (DARTS: 0.2; 0: off)"),
        ("grad_clip", cfg.grad_clip is None or cfg.grad_clip > 0, "> 0 (or null: no clipping)"),
        ("whiten_stem.images", cfg.whiten_stem.images >= 1, ">= 1"),
        ("whiten_stem.eps", cfg.whiten_stem.eps > 0, "> 0"),
        ("whiten_stem.bias_epochs", cfg.whiten_stem.bias_epochs is None or cfg.whiten_stem.bias_epochs >= 0,
         ">= 0 (or null: always trained)"),
        ("ema.decay", 0 <= cfg.ema.decay <= 1, "in [0, 1]"),
        ("ema.every", cfg.ema.every >= 1, ">= 1"),
        ("lookahead.every", cfg.lookahead.every >= 1, ">= 1"),
        ("lookahead.decay", 0 <= cfg.lookahead.decay <= 1, "in [0, 1]"),
        ("lookahead.power", cfg.lookahead.power >= 0, ">= 0"),
        ("eval_every", cfg.eval_every >= 0, ">= 0 (0: only at the end)"),
        ("log_every", cfg.log_every >= 1, ">= 1"),
        ("untimed_warmup", cfg.untimed_warmup >= 0, ">= 0 (0: none)"),
        ("aux_weight", cfg.aux_weight >= 0, ">= 0 (0 ignores auxiliary outputs)"),
        ("processes", cfg.processes is None or cfg.processes >= 1, ">= 1 (or null: one per GPU)"),
    ]


def check_config(cfg: TrainerConfig) -> None:
    _one_of("optimizer.name", cfg.optimizer.name, OPTIMIZERS)
    _one_of("schedule.name", cfg.schedule.name, SHAPES)
    _one_of("precision", cfg.precision, ["auto", *PRECISIONS])
    _one_of("init", cfg.init, INITS)
    _one_of("tta", cfg.tta, TTA)
    _one_of("loss_reduction", cfg.loss_reduction, ("mean", "sum"))
    _one_of("distributed", cfg.distributed, ("none", "ddp"))
    if cfg.compile_mode is not None:
        _one_of("compile_mode", cfg.compile_mode, COMPILE_MODES)
    if not DEVICE.match(cfg.device):
        raise ConfigError("device", f"unknown device '{cfg.device}'", hint="auto, cpu, cuda or cuda:N")
    if cfg.augment is not None:
        _one_of("augment.flip", cfg.augment.flip, FLIPS)
        _one_of("augment.pad_mode", cfg.augment.pad_mode, PAD_MODES)
        for key, value in (("augment.translate", cfg.augment.translate), ("augment.cutout", cfg.augment.cutout)):
            if value < 0:
                raise ConfigError(key, f"must be >= 0, not {value}")
    for key, holds, what in _ranges(cfg):
        if not holds:
            value = cfg
            for part in key.split("."):
                value = getattr(value, part)
            shown = "" if key == "budget" else f", not {value!r}"
            raise ConfigError(key, f"must be {what}{shown}")


def trainer_config(config: TrainerConfig | Mapping[str, Any] | DictConfig | None = None,
                   **overrides: Any) -> TrainerConfig:
    """A checked TrainerConfig from a Hydra node or a mapping: unknown keys, wrong types, unknown names
    (optimizer, schedule, precision, ...) and impossible values are ConfigErrors before any work is done."""
    if isinstance(config, TrainerConfig):
        config = dataclasses.asdict(config)
    result = structured(TrainerConfig, config, overrides,
                        error=lambda key, message, hint: ConfigError(key, message,
                                                                     hint=hint or "see conf/trainer/default.yaml"),
                        label="trainer")
    check_config(result)
    return result


def _sets(values: Mapping[str, Any], key: str) -> bool:
    """Whether the nested mapping ``values`` sets the dotted ``key`` (or a part of it)."""
    head, _, rest = key.partition(".")
    if head not in values:
        return False
    return not rest or not isinstance(values[head], Mapping) or _sets(values[head], rest)


def trainer_with_overrides(base: Mapping[str, Any] | DictConfig | None, overrides: Mapping[str, Any] | None,
                           where: str) -> TrainerConfig:
    """The trainer group with ``overrides`` on top (written at ``where``, e.g. ``evaluator.search_overrides``),
    checked; a mistake is named where its value was written."""
    trainer_config(base)
    given = dict(plain(overrides) or {})
    check_fields(TrainerConfig, given, lambda key, message, hint: ConfigError(key, message, hint, prefix=where),
                 label=where)
    merged = OmegaConf.to_container(OmegaConf.merge(OmegaConf.create(dict(plain(base) or {})), given), resolve=True)
    try:
        return trainer_config(merged)  # type: ignore[arg-type]
    except ConfigError as err:
        key = err.key.removeprefix("trainer.")
        if _sets(given, key):
            raise ConfigError(key, err.message, err.hint, prefix=where) from err
        raise
