"""The options of `task=profile_ops` (conf/task/profile_ops.yaml), checked before anything is measured."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from compiler.config_values import ConfigError, check_fields, check_seed, check_value

CLOCKS = ("wall", "thread")


@dataclass
class ProfileOpsOptions:
    _target_: str = "search.tasks.profile_ops.profile_ops_task"
    archs: list[str] = field(default_factory=lambda: ["examples/*.arch"])
    space: Optional[str] = None
    space_samples: int = 10
    synthetic: int = 10
    synthetic_resolution: int = 224
    seed: int = 0
    batch_sizes: list[int] = field(default_factory=lambda: [1])
    dtype: str = "fp32"
    channels_last: bool = False
    threads: Optional[int] = None
    cpu: Optional[int] = None
    clock: str = "wall"
    rotate_mb: Optional[float] = None
    op_min_time_s: float = 0.05
    op_rounds: int = 1
    model_min_time_s: float = 0.3
    model_rounds: int = 3
    table: Optional[str] = None
    report: bool = True
    calibrate: bool = True


def check_profile_ops_options(node: DictConfig) -> None:
    """Keys and types of the ``task`` node, then the ranges; every mistake names its ``task.*`` key."""
    values: Any = OmegaConf.to_container(node, resolve=True)
    check_fields(ProfileOpsOptions, values, lambda key, message, hint: ConfigError(f"task.{key}", message, hint),
                 label="task")
    get = {**ProfileOpsOptions().__dict__, **values}.get
    for key in ("space_samples", "synthetic", "rotate_mb"):
        if get(key) is not None:
            check_value(get(key), float, f"task.{key}", minimum=0)
    for key in ("synthetic_resolution", "op_rounds", "model_rounds"):
        check_value(get(key), int, f"task.{key}", minimum=1)
    for key in ("op_min_time_s", "model_min_time_s"):
        if get(key) <= 0:
            raise ConfigError(f"task.{key}", f"must be > 0, not {get(key)!r}")
    check_seed(get("seed"), "task.seed")
    if not get("batch_sizes") or min(get("batch_sizes")) < 1:
        raise ConfigError("task.batch_sizes", f"expected batch sizes >= 1, e.g. [1,64], not {get('batch_sizes')!r}")
    if get("clock") not in CLOCKS:
        raise ConfigError("task.clock", f"unknown clock '{get('clock')}'", hint="wall or thread")
    if not get("archs") and not get("space") and not get("synthetic"):
        raise ConfigError("task.archs", "no models to measure: task.archs, task.space and task.synthetic give none",
                          hint="e.g. task.archs=[examples/*.arch] or task.synthetic=10")
