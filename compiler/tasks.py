"""Tasks of the compiler's command line. Each takes the composed config and returns an exit status."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from compiler.api import CompileOptions, CompileResult, read_source
from compiler.backends.export import ExportError, check_formats, export_model
from compiler.config_values import check_value
from compiler.errors import ArchError, Span
from compiler.ir.ops import load_op_modules
from compiler.limits import Limits, check_build
from compiler.run_dir import check_out_dir
from compiler.space import Space, load_space

log = logging.getLogger("compiler")


def output_dir(cfg: DictConfig) -> Path:
    """``out_dir`` if given (checked: a directory that can be written, created if need be), else Hydra's run (or
    multirun job) directory."""
    if cfg.get("out_dir"):
        return check_out_dir(str(cfg.out_dir))
    from hydra.core.hydra_config import HydraConfig
    return Path(HydraConfig.get().runtime.output_dir)


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def config_limits(cfg: DictConfig) -> Limits:
    """``limits.NAME=N`` from the config (conf/config.yaml lists them with their defaults)."""
    values = _plain(cfg.get("limits"))
    if values is not None and not isinstance(values, dict):
        raise ArchError(f"limits must be a mapping of limit names to numbers, got {values!r}", Span("limits", 0, 0),
                        hint="e.g. limits.max_layers=20000")
    return Limits.from_mapping(values)


def compile_options(cfg: DictConfig) -> CompileOptions:
    """``input_shape``, ``debug`` and ``limits`` from the config, checked (a mistake names its key)."""
    shape = _plain(cfg.get("input_shape"))
    return CompileOptions(input_shape=shape, debug=bool(cfg.get("debug", False)), limits=config_limits(cfg))


def model_params(cfg: DictConfig) -> dict[str, Any]:
    params = _plain(cfg.get("params"))
    if params and not isinstance(params, dict):
        raise ArchError(f"params must be a mapping of model parameters to values, got {params!r}",
                        Span("params", 0, 0), hint="e.g. +params.num_classes=10")
    return dict(params) if params else {}


def export_formats(cfg: DictConfig) -> list[str]:
    """``export=[onnx,pt2,torchscript]`` from the config, checked before any work is done."""
    try:
        return check_formats([str(f) for f in cfg.get("export") or []])
    except ValueError as err:
        raise ArchError(str(err), Span("export", 0, 0), hint="e.g. export=[onnx,pt2]") from err


def write_exports(compiled: CompileResult, model: Any, out: Path, formats: list[str], where: str,
                  library_logs: bool = False) -> None:
    """Export ``model`` (built from ``compiled``, with the weights it has) next to model.py, checked.
    ``library_logs``: show the exporters' INFO lines (``debug=true``)."""
    if not formats:
        return
    try:
        report = export_model(model, [n.shape for n in compiled.graph.inputs], out, formats, library_logs=library_logs)
    except ExportError as err:
        raise ArchError(str(err), Span(where, 0, 0), hint="model.py itself is fine; this format cannot express "
                        "some op of the model (see the cause with debug=true)") from err
    for name, entry in report["formats"].items():
        diff = entry.get("max_abs_diff")
        checked = f"max |diff| {diff:.2g} vs the model" if diff is not None else "not run"
        print(f"exported {out / entry['file']} ({name}; checked with {entry['checked_with']}: {checked})")


def check_space(cfg: DictConfig, space: Space) -> int:
    """A file with choices: check the space statically, list its decisions, write space.json."""
    space.validate()
    out = output_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    decisions = [{"name": d.name, "kind": d.kind, "options": list(d.options), "source": str(d.span)}
                 for d in space.decisions]
    (out / "space.json").write_text(json.dumps({"name": space.name, "size": space.size, "decisions": decisions},
                                               indent=2) + "\n")
    width = max(len(d.name) for d in space.decisions)
    for d in space.decisions:
        print(f"{d.name.ljust(width)}  {d.kind:<5}  {' | '.join(d.options)}")
    print(f"{space.name}: a search space of {space.size:,} architectures in {len(space.decisions)} decisions; every "
          f"option compiles (checked one decision at a time and on random combinations)")
    print(f"wrote {out / 'space.json'}; search it with `python -m compiler +search=evolution space=...` "
          f"(see conf/space/)")
    return 0


def compile_task(cfg: DictConfig) -> int:
    if not cfg.get("arch"):
        raise ArchError("no .arch file given", hint="run e.g. `python -m compiler arch=examples/resnet18.arch`")
    load_op_modules(_plain(cfg.get("ops")) or [])
    formats = export_formats(cfg)
    options = compile_options(cfg)
    max_rows = check_value(cfg.task.get("max_rows"), Optional[int], "task.max_rows", minimum=0)
    space = load_space(read_source(cfg.arch, options.limits), str(cfg.arch), options=options, **model_params(cfg))
    if space.decisions:
        if formats:
            raise ArchError(f"{cfg.arch} is a search space ({len(space.decisions)} decisions): there is no one "
                            "model to export", hint="export a searched model: its best/ folder is written with "
                            "the same export=[...] setting")
        return check_space(cfg, space)
    result = space.compile(())  # the one model of a file without choices (parsed once, above)
    if formats:  # only exports build the model: its size limits are checked before anything is written
        check_build(result.graph, result.limits)
    out = result.write(output_dir(cfg))
    for warning in result.warnings:
        print(warning)
    print(result.layer_table(max_rows))
    print(f"wrote {out / 'model.py'}, {out / 'profile.py'}, {out / 'arch.arch'}, {out / 'summary.json'}")
    if formats:
        write_exports(result, result.build(), out, formats, str(cfg.arch),  # freshly initialised weights
                      library_logs=bool(cfg.get("debug")))
    return 0
