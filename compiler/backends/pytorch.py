"""Backend: concrete, shape-annotated IR -> standalone PyTorch source (one nn.Module, imports only torch)."""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import jinja2

from compiler.backends.lowerings import Lowering  # also adds the built-in ops' lowerings to the registry
from compiler.backends.names import class_name, python_name
from compiler.errors import ArchError
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


def _register(index: int) -> str:
    return "x" if index == 0 else f"x{index}"


def _register_index(var: str) -> int | None:
    """The number of a register name (x -> 0, x7 -> 7); None for any other variable (an input's name)."""
    if var == "x":
        return 0
    digits = var[1:]
    return int(digits) if var[:1] == "x" and digits.isascii() and digits.isdigit() and digits[0] != "0" else None


def in_place_nodes(graph: Graph, registry: OpRegistry = REGISTRY) -> set[str]:
    """Nodes of ``in_place_able`` ops that may overwrite their first input: activations (``inplace=True``) and
    ops whose lowering has an in-place statement (``a += b``).

    Safe only when that input is a tensor of its own (``fresh_output``) that nobody else reads, and not an
    activation's output (sigmoid/relu backward read their own output, which an in-place op would overwrite).
    Other producers (conv, batch norm, add, pooling) keep their inputs, never their outputs, for backward, and
    autograd's version counter turns any mistake here into an error rather than a wrong gradient.
    """
    users = graph.users()
    ops = {n.name: n.op for n in graph.nodes}
    outputs = set(graph.outputs)
    result = set()
    for node in graph.nodes:
        if not node.inputs or not registry[node.op].in_place_able:
            continue
        first = node.inputs[0]
        producer = registry[ops[first]]
        if producer.fresh_output and not producer.activation and len(users[first]) == 1 and first not in outputs:
            result.add(node.name)
    return result


def lower_node(node: Node, registry: OpRegistry = REGISTRY) -> Lowering:
    """The node's lowering, from its op's registration."""
    spec = registry[node.op]
    if spec.lower is None:
        raise ArchError(f"op '{node.op}' has no PyTorch lowering", node.span,
                        hint=f"its register_op call ({spec.module or 'unknown module'}) needs lower=...")
    return spec.lower(node.attrs, node.meta["input_shapes"], node.shape)


def _with_inplace(constructor: str) -> str:
    return constructor[:-1] + ("inplace=True)" if constructor.endswith("()") else ", inplace=True)")


class _Registers:
    """Local variables of forward(): a value takes over the variable of its first input when that input dies
    at this node (as hand-written forward() code does, so intermediates are freed as early), else the lowest
    free one of x, x1, x2, ..."""

    def __init__(self, graph: Graph, input_vars: dict[str, str]) -> None:
        self.outputs = set(graph.outputs)    # returned at the end: never freed
        self.last_use: dict[str, int] = {}
        for index, node in enumerate(graph.nodes):
            for i in node.inputs:
                self.last_use[i] = index
        self.var: dict[str, str] = dict(input_vars)
        self.holder: dict[str, str] = {v: n for n, v in input_vars.items()}  # variable -> node whose value it holds
        self.free: list[int] = []           # freed register numbers (a heap), reused lowest first
        self.next = 0                        # registers 0 .. next-1 have been handed out

    def assign(self, index: int, node: Node) -> str:
        """Free the inputs that die here, then pick the variable that holds ``node``'s value."""
        for i in set(node.inputs):
            v = self.var[i]
            if self.last_use[i] == index and self.holder.get(v) == i and i not in self.outputs:
                del self.holder[v]
                number = _register_index(v)
                if number is not None:
                    heapq.heappush(self.free, number)
        first = node.inputs[0] if node.inputs else None
        if first is not None and self.var[first] not in self.holder and first not in self.outputs:
            target = self.var[first]
        else:
            target = self._fresh()
        self.holder[target] = node.name
        self.var[node.name] = target
        return target

    def _fresh(self) -> str:
        while self.free and _register(self.free[0]) in self.holder:  # taken over since it was freed
            heapq.heappop(self.free)
        while _register(self.next) in self.holder:  # an input variable may be named like a register
            self.next += 1
        if self.free and self.free[0] < self.next:
            return _register(heapq.heappop(self.free))
        self.next += 1
        return _register(self.next - 1)


def _forward_line(target: str, node: Node, lowering: Lowering, module_ref: str | None, inputs: Sequence[str],
                  in_place: bool) -> str:
    if in_place and lowering.in_place is not None and target == inputs[0]:
        code = lowering.in_place(inputs)
    else:
        code = f"{target} = {lowering.forward(module_ref, inputs)}"
    return f"        {code}  # {node.name}: {_shape(node.shape)}"


@dataclass(frozen=True)
class LoweredGraph:
    """The pieces of generated source for one graph; templates arrange them (model.py.j2, supernet.py.j2)."""

    class_name: str
    model_name: str
    attributes: dict[str, str]       # node name -> its Python identifier (module attribute or input variable)
    module_lines: list[str]          # __init__ body
    input_vars: list[str]
    forward_lines: list[str]         # forward() body, one statement per node
    result: str                      # the variable forward() returns
    example_inputs: str              # torch.randn(...) arguments for a test call
    aux_results: list[str]           # the auxiliary outputs' variables (also returned in training mode)


def attribute_names(graph: Graph, reserved: Iterable[str] = ()) -> dict[str, str]:
    """node name -> its identifier in the generated source (``self.NAME`` for layers): state_dict keys start so."""
    used = {*reserved, class_name(graph.name)}
    return {n.name: python_name(n.name, used) for n in graph.nodes}


def lower_graph(graph: Graph, registry: OpRegistry = REGISTRY, reserved: Iterable[str] = ()) -> LoweredGraph:
    """Lower every node; ``reserved`` names (the template's own variables) are never given to nodes or inputs."""
    cls = class_name(graph.name)
    attr = attribute_names(graph, reserved)
    in_place = in_place_nodes(graph, registry)
    inputs = graph.inputs
    regs = _Registers(graph, {n.name: attr[n.name] for n in inputs})

    module_lines: list[str] = []
    forward_lines: list[str] = []
    inference = graph.inference_nodes()
    guarded = False   # inside an `if self.training:` block of layers only the auxiliary outputs need
    for index, node in enumerate(graph.nodes):
        if node.op == "input":
            continue
        if (node.name not in inference) != guarded:
            guarded = not guarded
            if guarded:
                forward_lines.append("        if self.training:  # layers of the auxiliary outputs only")
        lowering = lower_node(node, registry)
        module_ref = None
        if lowering.module is not None:
            constructor = lowering.module
            if node.name in in_place:
                constructor = _with_inplace(constructor)
            module_lines.append(f"        self.{attr[node.name]} = {constructor}  # {node.op} -> {_shape(node.shape)}")
            module_ref = f"self.{attr[node.name]}"
        args = [regs.var[i] for i in node.inputs]
        target = regs.assign(index, node)
        line = _forward_line(target, node, lowering, module_ref, args, node.name in in_place)
        forward_lines.append("    " + line if guarded else line)

    example = ", ".join(f"torch.randn(2, *{tuple(n.shape)!r})" for n in inputs)
    return LoweredGraph(cls, cls if not graph.name.isidentifier() else graph.name, attr, module_lines,
                        [attr[n.name] for n in inputs], forward_lines, regs.var[graph.output], example,
                        [regs.var[node] for _, node in graph.aux_outputs])


def generate_source(graph: Graph, registry: OpRegistry = REGISTRY) -> str:
    """Python source of the model. Deterministic: the same graph gives the same text, byte for byte."""
    low = lower_graph(graph, registry)
    return template("model.py.j2").render(
        class_name=low.class_name, model_name=low.model_name,
        params=int(graph.meta.get("params", 0)), macs=int(graph.meta.get("macs", 0)),
        inference_params=int(graph.meta.get("inference_params", graph.meta.get("params", 0))),
        input_shape=list(graph.inputs[0].shape), output_shape=list(graph.output_node.shape),
        module_lines=low.module_lines, input_vars=low.input_vars, forward_lines=low.forward_lines,
        result=low.result, example_inputs=low.example_inputs, aux_results=low.aux_results,
        aux_outputs=[(name, list(graph.node(node).shape)) for name, node in graph.aux_outputs])
