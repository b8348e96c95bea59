"""Backend: concrete, shape-annotated IR -> standalone PyTorch source (one nn.Module, imports only torch)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

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


def _registers() -> Iterator[str]:
    yield "x"
    n = 0
    while True:
        n += 1
        yield f"x{n}"


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

    # Local variables are registers: a value takes over the variable of its first input when that input dies
    # here (as hand-written forward() code does, so intermediates are freed as early), else the first free one
    # of x, x1, x2, ...; the comment on each line names the layer and its shape.
    last_use: dict[str, int] = {}
    for index, node in enumerate(graph.nodes):
        for i in node.inputs:
            last_use[i] = index
    var: dict[str, str] = {}
    live: dict[str, str] = {}  # variable -> node whose value it holds
    modules: list[dict[str, Any]] = []
    forward: list[_Line] = []
    input_vars = []
    for index, node in enumerate(graph.nodes):
        spec = registry[node.op]
        if node.op == "input":
            var[node.name] = attr[node.name]
            live[attr[node.name]] = node.name
            input_vars.append(attr[node.name])
            continue
        lowering = spec.lower(node.attrs, node.meta["input_shapes"], node.shape)
        module_ref = None
        if lowering.module is not None:
            constructor = lowering.module
            if node.name in in_place:
                constructor = constructor[:-1] + ("inplace=True)" if constructor.endswith("()") else ", inplace=True)")
            modules.append({"attr": attr[node.name], "constructor": constructor,
                            "comment": f"{node.op} -> {_shape(node.shape)}"})
            module_ref = f"self.{attr[node.name]}"
        expr = lowering.forward(module_ref, [var[i] for i in node.inputs])
        for i in set(node.inputs):
            if last_use[i] == index and live.get(var[i]) == i and i != graph.output:
                del live[var[i]]
        first = node.inputs[0] if node.inputs else None
        if first is not None and var[first] not in live and first != graph.output:
            target = var[first]
        else:
            target = next(v for v in _registers() if v not in live)
        live[target] = node.name
        var[node.name] = target
        forward.append(_Line(f"{target} = {expr}", f"{node.name}: {_shape(node.shape)}"))

    inputs = graph.inputs
    example = ", ".join(f"torch.randn(2, *{tuple(n.shape)!r})" for n in inputs)
    return template("model.py.j2").render(
        class_name=cls, model_name=cls if not graph.name.isidentifier() else graph.name,
        params=int(graph.meta.get("params", 0)), macs=int(graph.meta.get("macs", 0)),
        input_shape=list(inputs[0].shape), output_shape=list(graph.output_node.shape), modules=modules,
        input_vars=input_vars, forward=forward, result=var[graph.output], example_inputs=example)
