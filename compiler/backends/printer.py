"""Backend: concrete IR -> canonical .arch text. ``parse(print_arch(g)) == g`` (names, ops, attributes, edges)."""
from __future__ import annotations

from typing import Any

from compiler.ir.graph import Graph, Node
from compiler.ir.ops import REGISTRY, REQUIRED, OpRegistry


def literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    raise TypeError(f"cannot print {value!r} as an .arch literal")


def _call(node: Node, registry: OpRegistry) -> str:
    """Canonical call text: leading arguments that differ from their defaults are positional, the other
    non-default ones are keywords, defaults are left out."""
    spec = registry[node.op]
    parts = []
    positional = True
    for arg in spec.args:
        value = node.attrs[arg.name]
        is_default = arg.default is not REQUIRED and value == arg.default and type(value) is type(arg.default)
        if is_default:
            positional = False
        elif positional:
            parts.append(literal(value))
        else:
            parts.append(f"{arg.name}={literal(value)}")
    return f"{node.op}({', '.join(parts)})" if parts else node.op


def print_arch(graph: Graph, registry: OpRegistry = REGISTRY, header: str | None = None) -> str:
    """Canonical text: one statement per node, in topological order."""
    lines = [f"# {line}".rstrip() for line in (header or "").splitlines()]
    lines.append(f"model {graph.name}() {{")
    for node in graph.nodes:
        if node.op == "input":
            lines.append(f"    input {node.name}: [{', '.join(literal(d) for d in node.attrs['shape'])}]")
        else:
            source = node.inputs[0] if len(node.inputs) == 1 else f"({', '.join(node.inputs)})"
            lines.append(f"    {node.name} = {source} -> {_call(node, registry)}")
    lines += [f"    output {name} = {node}" for name, node in graph.aux_outputs]  # training-only outputs
    lines.append(f"    output {graph.output}")
    lines.append("}")
    return "\n".join(lines) + "\n"
