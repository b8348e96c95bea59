"""Tasks of the compiler's command line. Each takes the composed config and returns an exit status."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from compiler.api import CompileOptions, compile_file
from compiler.errors import ArchError
from compiler.ir.ops import load_op_modules

log = logging.getLogger("compiler")


def output_dir(cfg: DictConfig) -> Path:
    """``out_dir`` if given, else Hydra's run (or multirun job) directory."""
    if cfg.get("out_dir"):
        return Path(cfg.out_dir)
    from hydra.core.hydra_config import HydraConfig
    return Path(HydraConfig.get().runtime.output_dir)


def compile_options(cfg: DictConfig) -> CompileOptions:
    shape = cfg.get("input_shape")
    return CompileOptions(input_shape=tuple(int(d) for d in shape) if shape is not None else None,
                          debug=bool(cfg.get("debug", False)))


def model_params(cfg: DictConfig) -> dict[str, Any]:
    params = cfg.get("params")
    return dict(OmegaConf.to_container(params, resolve=True)) if params else {}  # type: ignore[arg-type]


def compile_task(cfg: DictConfig) -> int:
    if not cfg.get("arch"):
        raise ArchError("no .arch file given", hint="run e.g. `python -m compiler arch=examples/resnet18.arch`")
    load_op_modules(cfg.get("ops") or [])
    result = compile_file(cfg.arch, options=compile_options(cfg), **model_params(cfg))
    out = result.write(output_dir(cfg))
    for warning in result.warnings:
        print(warning)
    print(result.layer_table(cfg.task.get("max_rows")))
    print(f"wrote {out / 'model.py'}, {out / 'profile.py'}, {out / 'arch.arch'}, {out / 'summary.json'}")
    return 0
