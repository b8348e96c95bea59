"""Backend: the source of a supernet, for differentiable architecture search (DARTS); the orchestration (a Space's
decisions relaxed, fixed or refused, the Supernet object) is ``compiler/supernet.py``, one layer up.

A supernet's IR holds ``mixed`` nodes (one per relaxed choice site, its options as inputs) and a ``guard`` on every
node: the (decision, option) pairs it exists under. This module lowers such an IR with the same op lowerings as
every ``model.py`` (``pytorch.py``) into a template that adds the architecture logits (``supernet.py.j2``), rather
than assembling modules from the IR at run time: the code that trains in the supernet is the code that later runs
in the derived model, it reads like any generated model, it imports only torch, and the new lowerings are the
supernet ops' (``supernet_ops.py``). Costs per option (parameters, MACs, or any per-node cost such as a latency
table's) come from the IR after the analysis pass, through the guards.

The same guards make the source able to run one sampled path (GDAS): each statement of an option is guarded by
``on(active, decision, option)``, so with ``forward(x, active=[...])`` only the chosen option of every decision is
computed. Two memory-light rewrites of the supernet IR, before the passes: partial channel connections
(``partial_channels``, PC-DARTS: every relaxed edge computes its options on 1/K of the channels) and edge
normalisation (``normalise_edges``: a node sums its relaxed edges weighted by a softmax of its own logits).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Sequence

from compiler.backends.pytorch import lower_graph, template
from compiler.backends.supernet_ops import supernet_registry
from compiler.frontend.expand import Guard
from compiler.ir.graph import Graph, Node, frozen
from compiler.ir.ops import OpRegistry

ZERO_OP = "zero"                # an option that is this op removes the edge (DARTS' "none"); never derived
# supernet.py.j2's own names (forward()'s variables, the class's attributes and methods); never given to nodes.
# tests/test_supernet.py checks that this covers every name the rendered template defines.
TEMPLATE_NAMES = ("weights", "active", "edges", "mix", "on", "edge_sum", "partial_join", "alphas", "betas",
                  "arch_parameters", "weight_parameters", "arch_weights", "edge_weights", "ARCH_SIZES", "EDGE_SIZES")

NodeCost = Callable[[Node], float]   # the cost of one node of the compiled supernet (params, MACs, ms, ...)
CostTable = dict[Guard, float]       # summed node cost per guard ((decision, option) pairs, sorted)

NODE_COSTS: dict[str, NodeCost] = {
    "params": lambda node: float(node.meta.get("params", 0)),
    "macs": lambda node: float(node.meta.get("macs", 0)),
}


def _guard_key(guard: Guard) -> Guard | None:
    """The guard as a sorted set of pairs; None when it asks one decision for two options (never built)."""
    pairs = tuple(sorted(set(guard)))
    decisions = [d for d, _ in pairs]
    return None if len(set(decisions)) != len(decisions) else pairs


def cost_table(graph: Graph, node_cost: NodeCost) -> CostTable:
    """Summed cost of a compiled supernet's nodes per guard; the key () holds what every architecture has."""
    table: CostTable = {}
    for node in graph.nodes:
        key = _guard_key(node.meta.get("guard", ()))
        if key is not None and node.op not in ("input", "mixed"):  # neither exists in a derived network
            table[key] = table.get(key, 0.0) + float(node_cost(node))
    return table


def option_costs(graph: Graph, sizes: Sequence[int], node_cost: NodeCost) -> list[list[float]]:
    """Per relaxed decision, per option: the cost of the nodes that exist only with that option."""
    costs = [[0.0] * n for n in sizes]
    for guard, cost in cost_table(graph, node_cost).items():
        for d, k in guard:
            costs[d][k] += cost
    return costs


def _guarded_lines(graph: Graph, lines: Sequence[str]) -> tuple[list[str], list[str]]:
    """Each option's statements under ``if on(active, d, k):`` (all of its guard's pairs), and the variables those
    statements assign, which forward() binds first: a mix over a skipped option must find its name bound."""
    nodes = [n for n in graph.nodes if n.op != "input"]
    if len(nodes) != len(lines):
        raise RuntimeError(f"internal error: {len(lines)} forward statements for {len(nodes)} nodes")
    result, skippable = [], []
    for node, line in zip(nodes, lines):
        pairs = node.meta.get("guard", ())
        if not pairs:
            result.append(line)
            continue
        guard = _guard_key(pairs) or tuple(sorted(set(pairs)))  # contradictory guards: never on one active path
        code = line.lstrip()
        indent = line[:len(line) - len(code)]
        condition = " and ".join(f"on(active, {d}, {k})" for d, k in guard)
        result.append(f"{indent}if {condition}: {code}")
        target = code.split()[0]
        if target not in skippable:
            skippable.append(target)
    return result, skippable


def generate_supernet_source(graph: Graph, arch_sizes: Sequence[int], edge_sizes: Sequence[int] = (),
                             registry: OpRegistry | None = None) -> str:
    low = lower_graph(graph, registry or supernet_registry(), reserved=TEMPLATE_NAMES)
    forward_lines, skippable = _guarded_lines(graph, low.forward_lines)
    skippable = [v for v in skippable if v not in low.input_vars]
    return template("supernet.py.j2").render(
        class_name=low.class_name + "Supernet", model_name=low.model_name, params=int(graph.meta.get("params", 0)),
        arch_sizes=list(arch_sizes), edge_sizes=list(edge_sizes), input_shape=list(graph.inputs[0].shape),
        output_shape=list(graph.output_node.shape), module_lines=low.module_lines, input_vars=low.input_vars,
        forward_lines=forward_lines, skippable=skippable, result=low.result, example_inputs=low.example_inputs)


def find_edge_groups(graph: Graph, registry: OpRegistry) -> list[tuple[int, ...]]:
    """The relaxed decisions summed by each node: for every sum (an op that ``sums_inputs``) with relaxed (mixed)
    inputs, their decision indices, once per distinct group (cells that share decisions give the same group)."""
    producers = {node.name: node for node in graph.nodes}
    groups: list[tuple[int, ...]] = []
    for node in graph.nodes:
        if not _sums(node, registry):
            continue
        group = tuple(producers[i].attrs["decision"] for i in node.inputs if producers[i].op == "mixed")
        if group and group not in groups:
            groups.append(group)
    return groups


def _sums(node: Node, registry: OpRegistry) -> bool:
    spec = registry.get(node.op)
    return spec is not None and spec.sums_inputs


def normalise_edges(graph: Graph, groups: Sequence[tuple[int, ...]], registry: OpRegistry) -> Graph:
    """Every sum of relaxed edges only becomes an `edge_sum` over its group's logits."""
    producers = {node.name: node for node in graph.nodes}
    nodes = []
    for node in graph.nodes:
        if _sums(node, registry) and all(producers[i].op == "mixed" for i in node.inputs):
            group = groups.index(tuple(producers[i].attrs["decision"] for i in node.inputs))
            node = dataclasses.replace(node, op="edge_sum", attrs=frozen({"group": group}))
        nodes.append(node)
    return graph.replace_nodes(nodes)


def without_affine_norms(graph: Graph) -> Graph:
    """Norms inside relaxed options (nodes with a guard) without affine parameters: every op with an ``affine``
    attribute (``bn``; torch's norm layers' convention: ``affine`` switches their ``weight`` and ``bias``)."""
    return graph.replace_nodes([dataclasses.replace(n, attrs=frozen({**n.attrs, "affine": False}))
                                if "affine" in n.attrs and n.meta.get("guard") else n for n in graph.nodes])


def _choice_inputs(mixed: Node, producers: Mapping[str, Node]) -> tuple[list[str], set[str]]:
    """The values a relaxed layer choice's options read from outside, and the names of its options' nodes."""
    decision = mixed.attrs["decision"]
    inside: set[str] = set()
    outside: list[str] = []
    stack = list(mixed.inputs)
    while stack:
        name = stack.pop()
        node = producers[name]
        if name in inside or name in outside:
            continue
        if any(d == decision for d, _ in node.meta.get("guard", ())):
            inside.add(name)
            stack.extend(node.inputs)
        else:
            outside.append(name)
    return outside, inside


def partial_channel_connections(graph: Graph, k: int, layer_decisions: set[int]) -> Graph:
    """Each relaxed layer choice of one input computes its options on its input's first 1/k channels."""
    producers = {node.name: node for node in graph.nodes}
    taken = {node.name for node in graph.nodes}
    before: dict[str, Node] = {}      # node name -> partial_in node to insert just before it
    after: dict[str, Node] = {}       # mixed node name -> partial_out node to insert just after it
    renamed: dict[str, dict[str, str]] = {}  # node name -> {input: replacement}
    for mixed in graph.nodes:
        if mixed.op != "mixed" or mixed.attrs["decision"] not in layer_decisions:
            continue
        outside, inside = _choice_inputs(mixed, producers)
        if len(outside) != 1:
            continue   # options of several inputs (a merge): no single edge to sample channels of
        source = outside[0]
        value = after[source].name if source in after else source  # an earlier choice's joined output
        first = next(n for n in graph.nodes if n.name in inside | {mixed.name})
        meta = frozen({key: v for key, v in mixed.meta.items() if key in ("stack", "guard")})
        part = _fresh_name(f"{mixed.name}_partial", taken)
        join = _fresh_name(f"{mixed.name}_join", taken)
        before[first.name] = Node(part, "partial_in", (value,), frozen({"k": k}), mixed.span, meta)
        after[mixed.name] = Node(join, "partial_out", (mixed.name, value), frozen({"k": k}), mixed.span, meta)
        for name in inside | {mixed.name}:
            renamed.setdefault(name, {})[source] = part
        for node in graph.nodes:  # the choice's users read the joined value
            if mixed.name in node.inputs and node.name not in inside:
                renamed.setdefault(node.name, {})[mixed.name] = join
    nodes = []
    for node in graph.nodes:
        if node.name in before:
            nodes.append(before[node.name])
        mapping = renamed.get(node.name, {})
        if mapping:
            node = dataclasses.replace(node, inputs=tuple(mapping.get(i, i) for i in node.inputs))
        nodes.append(node)
        if node.name in after:
            nodes.append(after[node.name])
    output = after[graph.output].name if graph.output in after else graph.output
    return graph.replace_nodes(nodes, output=output)


def _fresh_name(base: str, taken: set[str]) -> str:
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}{n}"
    taken.add(name)
    return name


