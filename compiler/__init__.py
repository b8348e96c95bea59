"""AutoML-CodeGen compiler: .arch text -> AST -> IR -> passes -> PyTorch source, canonical .arch, summary."""
from pathlib import Path

from omegaconf import OmegaConf

from compiler.api import CompileOptions, CompileResult, compile_file, compile_graph, compile_source, parse_graph
from compiler.errors import ArchError, Span
from compiler.ir.ops import Arg, Lowering, ShapeError, register_op, torch_call

__all__ = ["ArchError", "Arg", "CompileOptions", "CompileResult", "Lowering", "ShapeError", "Span", "compile_file",
           "compile_graph", "compile_source", "parse_graph", "register_op", "torch_call"]

# `${project_root:}` in configs: the checkout this package runs from, so paths in conf/ work from any directory.
if not OmegaConf.has_resolver("project_root"):
    OmegaConf.register_new_resolver("project_root", lambda: str(Path(__file__).resolve().parents[1]))
