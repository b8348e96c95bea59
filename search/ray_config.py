"""``search.ray``: where a search's Ray workers run and what each reserves, checked when the config is; Ray itself is
an optional extra, needed only when the run starts (``require_ray``). The executor is ``search/ray_executor.py``."""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from typing import Any, Optional

from compiler.config_values import ConfigError

RAY_EXTRA = "pip install -e '.[ray]'"  # (or `pip install 'automl-codegen[ray]'`)


@dataclass
class RayConfig:
    """``search.ray``: where the workers run and what each one reserves."""
    address: Any = None           # null: start a local Ray instance for this run; auto | HOST:PORT: join a cluster
    num_cpus: float = 1.0         # CPUs reserved by each worker (Ray also sets its OMP_NUM_THREADS to this)
    num_gpus: float = 0.0         # GPUs reserved by each worker (Ray sets its CUDA_VISIBLE_DEVICES); 0.5 shares one
    memory: Any = None            # memory reserved by each worker: bytes, or "4GB", "512MB"; null: no reservation
    runtime_env: dict[str, Any] = field(default_factory=dict)   # Ray's runtime_env (env_vars, working_dir, pip ...)


UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
         "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}


MAX_MEMORY_BYTES = 2**60   # 1 EiB


def memory_bytes(value: Any, key: str = "search.ray.memory") -> int | None:
    """``search.ray.memory`` as bytes: a number of bytes, or a number with a unit (4GB, 512MiB)."""
    if value is None:
        return None
    hint = "a number of bytes, or a size like 4GB or 512MiB"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(key, f"expected a memory size, not {value!r}", hint=hint)
    text = str(value).strip().lower().replace(" ", "")
    number = text.rstrip("kmgtib")
    unit = text[len(number):]
    try:
        amount = float(number) * UNITS[unit]
    except (ValueError, KeyError):
        raise ConfigError(key, f"not a memory size: {value!r}", hint=hint) from None
    if not amount >= 1:
        raise ConfigError(key, f"must be positive, not {value!r}", hint=hint)
    if not math.isfinite(amount) or amount > MAX_MEMORY_BYTES:   # inf, 1e400GB: no machine has it
        raise ConfigError(key, f"{value!r} is more memory than any machine has (at most {MAX_MEMORY_BYTES:,} bytes)",
                          hint=hint)
    return int(amount)


def require_ray() -> None:
    """Ray is an optional extra: without it, ``search.executor=ray`` is a message naming the extra (exit status 2)."""
    if importlib.util.find_spec("ray") is None:
        raise ConfigError("search.executor", "search.executor=ray needs Ray, which is not installed",
                          hint=f"install the extra: {RAY_EXTRA}")


def check_ray_config(cfg: RayConfig) -> None:
    """The ``search.ray`` values (``require_ray`` checks Ray itself, when the run starts)."""
    from compiler.config_values import check_value

    check_value(cfg.address, Optional[str], "search.ray.address", hint="auto, or HOST:PORT of a running Ray cluster")
    check_value(cfg.num_cpus, float, "search.ray.num_cpus", minimum=0)
    check_value(cfg.num_gpus, float, "search.ray.num_gpus", minimum=0)
    memory_bytes(cfg.memory)
    if cfg.num_cpus == 0 and cfg.num_gpus == 0:
        raise ConfigError("search.ray.num_cpus", "each worker must reserve some CPU or GPU",
                          hint="e.g. search.ray.num_cpus=1")


