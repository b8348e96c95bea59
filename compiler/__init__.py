"""AutoML-CodeGen compiler: .arch text -> AST -> IR -> passes -> PyTorch source, canonical .arch, summary."""
from compiler import hydra_setup  # noqa: F401  (resolvers and config nodes that conf/ uses)
from compiler.api import CompileOptions, CompileResult, compile_file, compile_graph, compile_source, parse_graph
from compiler.errors import ArchError, Span
from compiler.ir.ops import Arg, Lowering, ShapeError, register_op, torch_call

__all__ = ["ArchError", "Arg", "CompileOptions", "CompileResult", "Lowering", "ShapeError", "Span", "compile_file",
           "compile_graph", "compile_source", "parse_graph", "register_op", "torch_call"]
