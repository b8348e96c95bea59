"""Backend: concrete, shape-annotated IR -> standalone PyTorch source (one nn.Module, imports only torch)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from compiler.backends.names import class_name, python_name
from compiler.ir.graph import Graph, Node
from compiler.ir.ops import REGISTRY, OpRegistry

_TEMPLATES = Path(__file__).parent / "templates"


@lru_cache(maxsize=None)
def template(name: str) -> jinja2.Template:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(_TEMPLATES), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    return env.get_template(name)


def _shape(shape: tuple[int, ...]) -> str:
    return "[N, " + ", ".join(map(str, shape)) + "]"


@dataclass(frozen=True)
class _Line:
    code: str
    comment: str


def in_place_nodes(graph: Graph, registry: OpRegistry = REGISTRY) -> set[str]:
    """Activations that may overwrite their input: it is a fresh tensor that nothing else reads."""
    users = graph.users()
    result = set()
    for node in graph.nodes:
        if not registry[node.op].in_place_able:
            continue
        producer = graph.node(node.inputs[0])
        spec = registry[producer.op]
        # The producer's output must be a tensor of its own that nobody else reads, and not an activation
        # (sigmoid/relu backward read their own output, which an in-place op would overwrite).
        if spec.fresh_output and not spec.activation and len(users[producer.name]) == 1:
            result.add(node.name)
    return result


def generate_source(graph: Graph, registry: OpRegistry = REGISTRY) -> str:
    """Python source of the model. Deterministic: the same graph gives the same text, byte for byte."""
    used: set[str] = set()
    cls = class_name(graph.name)
    used.add(cls)
    attr = {n.name: python_name(n.name, used) for n in graph.nodes}
    in_place = in_place_nodes(graph, registry)

    # Variables: a value reuses the variable of its first input when that input dies here, as hand-written
    # forward() code does, so intermediates are freed as early as in the reference implementations.
    last_use: dict[str, int] = {}
    for index, node in enumerate(graph.nodes):
        for i in node.inputs:
            last_use[i] = index
    var: dict[str, str] = {}
    modules: list[dict[str, Any]] = []
    forward: list[_Line] = []
    input_vars = []
    for index, node in enumerate(graph.nodes):
        spec = registry[node.op]
        if node.op == "input":
            var[node.name] = attr[node.name]
            input_vars.append(attr[node.name])
            continue
        lowering = spec.lower(node.attrs, node.meta["input_shapes"], node.shape)
        module_ref = None
        if lowering.module is not None:
            if node.name in in_place:
                lowering_module = lowering.module[:-1] + ("inplace=True)" if lowering.module.endswith("()") else
                                                          ", inplace=True)")
            else:
                lowering_module = lowering.module
            modules.append({"attr": attr[node.name], "constructor": lowering_module,
                            "comment": f"{node.op} -> {_shape(node.shape)}"})
            module_ref = f"self.{attr[node.name]}"
        args = [var[i] for i in node.inputs]
        expr = lowering.forward(module_ref, args)
        first = node.inputs[0] if node.inputs else None
        if first is not None and graph.node(first).op != "input" and last_use.get(first) == index \
                and node.inputs.count(first) == 1:
            target = var[first]
        else:
            target = attr[node.name]
        var[node.name] = target
        forward.append(_Line(f"{target} = {expr}", f"{node.name}: {_shape(node.shape)}"))

    inputs = graph.inputs
    example = ", ".join(f"torch.randn(2, *{tuple(n.shape)!r})" for n in inputs)
    return template("model.py.j2").render(
        class_name=cls, model_name=cls if not graph.name.isidentifier() else graph.name,
        params=int(graph.meta.get("params", 0)), macs=int(graph.meta.get("macs", 0)),
        input_shape=list(inputs[0].shape), output_shape=list(graph.output_node.shape), modules=modules,
        input_vars=input_vars, forward=forward, result=var[graph.output], example_inputs=example)
