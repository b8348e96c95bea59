"""AutoML-CodeGen compiler: .arch text -> AST -> IR -> passes -> PyTorch source, canonical .arch, summary.

The public names below load on first use (PEP 562), so that importing a lower layer (``compiler.ir``,
``compiler.frontend``) does not drag in the backends and torch through this package's ``__init__``.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from compiler import hydra_setup  # noqa: F401  (resolvers and config nodes that conf/ uses)

_PUBLIC = {
    "ArchError": "compiler.errors", "Span": "compiler.errors",
    "Arg": "compiler.ir.ops", "ShapeError": "compiler.ir.ops", "register_op": "compiler.ir.ops",
    "Lowering": "compiler.backends.lowerings", "torch_call": "compiler.backends.lowerings",
    "CompileOptions": "compiler.api", "CompileResult": "compiler.api", "compile_file": "compiler.api",
    "compile_graph": "compiler.api", "compile_source": "compiler.api", "parse_graph": "compiler.api",
}
__all__ = ["ArchError", "Arg", "CompileOptions", "CompileResult", "Lowering", "ShapeError", "Span", "compile_file",
           "compile_graph", "compile_source", "parse_graph", "register_op", "torch_call"]   # = sorted(_PUBLIC)

if TYPE_CHECKING:
    from compiler.api import CompileOptions, CompileResult, compile_file, compile_graph, compile_source, parse_graph
    from compiler.backends.lowerings import Lowering, torch_call
    from compiler.errors import ArchError, Span
    from compiler.ir.ops import Arg, ShapeError, register_op


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'compiler' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
