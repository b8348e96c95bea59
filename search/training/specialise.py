"""Models meet their data: compile an .arch model for a data set's input shape and class count.

The model's declared input is replaced by the data set's [C, H, W]; its parameters named ``num_classes``,
``in_channels`` and ``size`` (the convention of the examples) are set from the data where the model has them and
the user did not. A model whose output cannot match the classes is a located error at its output layer.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Mapping

from compiler.api import CompileOptions, CompileResult, compile_source, parse_module, read_source
from compiler.errors import ArchError
from compiler.limits import DEFAULT_LIMITS, Limits
from search.data.base import DataSplits

# model parameter -> its value for a data set (None: no value, e.g. `size` of non-square images)
DATA_PARAMS: dict[str, Callable[[DataSplits], Any]] = {
    "num_classes": lambda d: d.num_classes,
    "in_channels": lambda d: d.input_shape[0],
    "size": lambda d: d.input_shape[1] if d.input_shape[1] == d.input_shape[2] else None,
}


def model_parameters(text: str, filename: str, limits: Limits = DEFAULT_LIMITS) -> list[str]:
    models = [d for d in parse_module(text, filename, limits=limits).definitions if d.kind == "model"]
    return [p.name for p in models[0].params] if models else []


def data_parameters(declared: list[str], data: DataSplits) -> dict[str, Any]:
    """The data-derived values of the model parameters in ``declared`` (the convention above)."""
    return {name: value for name, rule in DATA_PARAMS.items()
            if name in declared and (value := rule(data)) is not None}


def compile_for_data(arch: str | Path, data: DataSplits, params: Mapping[str, Any] | None = None,
                     options: CompileOptions | None = None) -> CompileResult:
    """Compile ``arch`` for ``data``; ``params`` (the user's overrides) win over the data-derived values.
    ``options`` apply as given (limits, passes, debug), except the input shape, which is the data's."""
    options = options or CompileOptions()
    text, filename = read_source(arch, options.limits), str(arch)
    declared = model_parameters(text, filename, options.limits)
    chosen = {**data_parameters(declared, data), **(params or {})}
    where = f"dataset '{data.name}' ({list(data.input_shape)}, {data.num_classes} classes)"
    try:
        result = compile_source(text, filename, options=replace(options, input_shape=data.input_shape), **chosen)
    except ArchError as err:
        hint = f"{err.hint}; " if err.hint else ""
        raise ArchError(err.message, err.span, err.source, f"{hint}the model was specialised to {where}",
                        err.stage) from err
    out = tuple(result.graph.output_node.shape)
    if out != (data.num_classes,):
        node = result.graph.output_node
        fix = ("add a `num_classes` parameter to the model and use it in the last layer, e.g. "
               "`model m(num_classes = 10) { ... -> linear(num_classes) }`" if "num_classes" not in declared
               else f"the output does not follow num_classes={chosen.get('num_classes')}: make the last layer use it")
        raise ArchError(f"the model outputs {list(out)} per image but {where} needs [{data.num_classes}]",
                        node.span, text, fix)
    for name, aux in result.graph.aux_outputs:  # their losses use the same labels
        node = result.graph.node(aux)
        if tuple(node.shape) != (data.num_classes,):
            raise ArchError(f"auxiliary output '{name}' gives {list(node.shape)} per image but {where} needs "
                            f"[{data.num_classes}]", node.span, text, "make its last layer use num_classes")
    return result
