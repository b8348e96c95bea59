"""What every task reads from the config the same way: compile options, model parameters, export formats, limits;
and the checked deployment exports. Each mistake is a located error naming its key (exit 2)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from compiler.api import CompileOptions, CompileResult
from compiler.backends.export import ExportError, MissingExportPackages, check_formats, export_model
from compiler.errors import ArchError, Span
from compiler.limits import Limits
from compiler.run_dir import output_dir
from search.structured import plain

__all__ = ["output_dir", "plain", "config_limits", "compile_options", "model_params", "export_formats",
           "write_exports"]


def config_limits(cfg: DictConfig) -> Limits:
    """``limits.NAME=N`` from the config (conf/config.yaml lists them with their defaults)."""
    values = plain(cfg.get("limits"))
    if values is not None and not isinstance(values, dict):
        raise ArchError(f"limits must be a mapping of limit names to numbers, got {values!r}", Span("limits", 0, 0),
                        hint="e.g. limits.max_layers=20000")
    return Limits.from_mapping(values)


def compile_options(cfg: DictConfig) -> CompileOptions:
    """``input_shape``, ``debug``, ``limits`` and ``passes`` from the config, checked (a mistake names its key)."""
    shape = plain(cfg.get("input_shape"))
    passes = plain(cfg.get("passes"))
    return CompileOptions(input_shape=shape, debug=bool(cfg.get("debug", False)), limits=config_limits(cfg),
                          **({} if passes is None else {"passes": passes}))


def model_params(cfg: DictConfig) -> dict[str, Any]:
    params = plain(cfg.get("params"))
    if params and not isinstance(params, dict):
        raise ArchError(f"params must be a mapping of model parameters to values, got {params!r}",
                        Span("params", 0, 0), hint="e.g. +params.num_classes=10")
    return dict(params) if params else {}


def export_formats(cfg: DictConfig) -> list[str]:
    """``export=[onnx,pt2,torchscript]`` from the config, checked before any work is done."""
    try:
        return check_formats([str(f) for f in cfg.get("export") or []])
    except MissingExportPackages as err:
        raise ArchError(str(err), Span("export", 0, 0), hint=err.install) from err
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
