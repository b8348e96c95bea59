"""Backend: a search space lowered to a supernet, for differentiable architecture search (DARTS).

Layer and input decisions are relaxed: the expander's supernet mode (``compiler/frontend/expand.py``) expands every
option of such a choice and joins them in one ``mixed`` node, which the supernet computes as
``sum_k softmax(alpha)_k * option_k``, with one logits vector per decision shared by all the places it occurs.
Value and depth decisions change the structure of the network (widths, repeat counts) and cannot be mixed; the
caller fixes them (``fixed``: decision name -> option), or picks their first option (``unrelaxed="first"``), or
gets an error that lists them. A fixed layer decision is simply not relaxed.

The supernet is generated source, lowered by the same op lowerings as every ``model.py`` (``pytorch.py``) into a
template that adds the architecture logits (``supernet.py.j2``), rather than modules assembled from the IR at run
time: the code that trains in the supernet is the code that later runs in the derived model, it reads like any
generated model (and can be saved next to a run), it imports only torch, and the one new lowering is the
``mixed`` op's. Costs per option (parameters, MACs, or any per-node cost such as a latency table's) come from the
IR after the analysis pass, through the ``guard`` each node carries: the (decision, option) pairs it exists under.
A space's auxiliary outputs (training-only heads) are left out of the supernet: the search trains the main output.

The same guards make the source able to run one sampled path (GDAS): each statement of an option is guarded by
``on(active, decision, option)``, so with ``forward(x, active=[...])`` only the chosen option of every decision is
computed. Two memory-light rewrites of the supernet IR, before the passes (``supernet_ops.py``): partial channel
connections (``partial_channels=K``, PC-DARTS: every relaxed edge computes its options on 1/K of the channels) and
edge normalisation (``edge_norm``: a node sums its relaxed edges weighted by a softmax of its own logits).
"""
from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch

from compiler.api import load_source, pipeline, to_graph
from compiler.backends.pytorch import attribute_names, lower_graph, template
from compiler.backends.supernet_ops import supernet_registry
from compiler.errors import ArchError
from compiler.frontend import ast
from compiler.frontend.expand import Guard
from compiler.ir.graph import Graph, Node, frozen
from compiler.ir.ops import OpRegistry
from compiler.space import Decision, Genotype, Space

RELAXABLE = ("layer", "input")  # decision kinds a supernet mixes; value and depth decisions are fixed
ZERO_OP = "zero"                # an option that is this op removes the edge (DARTS' "none"); never derived
# supernet.py.j2's own names (forward()'s variables, the class's attributes and methods); never given to nodes
TEMPLATE_NAMES = ("weights", "active", "edges", "mix", "on", "edge_sum", "partial_join", "alphas", "arch_parameters",
                  "weight_parameters", "arch_weights", "ARCH_SIZES")

NodeCost = Callable[[Node], float]   # the cost of one node of the compiled supernet (params, MACs, ms, ...)
CostTable = dict[Guard, float]       # summed node cost per guard ((decision, option) pairs, sorted)

NODE_COSTS: dict[str, NodeCost] = {
    "params": lambda node: float(node.meta.get("params", 0)),
    "macs": lambda node: float(node.meta.get("macs", 0)),
}


@dataclass(frozen=True)
class RelaxedDecision:
    position: int                   # index of the decision in the space (its place in a genotype)
    decision: Decision
    sites: int                      # mixed nodes that share its logits
    zero: tuple[bool, ...]          # option k is the `zero` op wherever the decision occurs
    param_free: tuple[bool, ...]    # option k has no parameters anywhere (skip, pooling, zero)

    @property
    def name(self) -> str:
        return self.decision.name

    @property
    def options(self) -> tuple[str, ...]:
        return self.decision.options


class SupernetError(ArchError):
    """A space that cannot become a supernet as configured (unfixed value/depth decisions, unknown names)."""


def _normal(text: str) -> str:
    return re.sub(r"\s+", "", text)


def resolve_fixed(space: Space, fixed: Mapping[str, Any] | None, unrelaxed: str = "error") -> dict[int, int]:
    """decision position -> option index, for the decisions the supernet does not relax.

    ``fixed`` maps a decision name to an option as written in the file (``16``, ``"sepconv(c, 5)"``; spaces do
    not matter) or, when no option is written that way, to its 0-based index. Value and depth decisions left
    out take their first option with ``unrelaxed="first"``, else (``"error"``) they are reported, all at once.
    """
    if unrelaxed not in ("error", "first"):
        raise SupernetError(f"unrelaxed must be 'error' or 'first', not {unrelaxed!r}")
    by_name = {d.name: i for i, d in enumerate(space.decisions)}
    result: dict[int, int] = {}
    for name, value in (fixed or {}).items():
        if name not in by_name:
            close = difflib.get_close_matches(str(name), list(by_name), n=1)
            raise SupernetError(f"the space '{space.name}' has no decision '{name}' to fix",
                                hint=f"did you mean '{close[0]}'?" if close else f"its decisions: {', '.join(by_name)}")
        d = space.decisions[by_name[name]]
        texts = [_normal(o) for o in d.options]
        written = _normal(str(value).lower() if isinstance(value, bool) else str(value))  # YAML true -> "true"
        if written in texts:
            result[by_name[name]] = texts.index(written)
        elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(d.options):
            result[by_name[name]] = value
        else:
            raise SupernetError(f"decision '{name}' has no option {value!r}", d.span,
                                hint=f"its options: {' | '.join(d.options)} (or their indices 0..{len(d.options) - 1})")
    missing = [i for i, d in enumerate(space.decisions) if d.kind not in RELAXABLE and i not in result]
    if missing and unrelaxed == "first":
        result.update({i: 0 for i in missing})
    elif missing:
        listed = "; ".join(f"'{space.decisions[i].name}' ({space.decisions[i].kind}: "
                           f"{' | '.join(space.decisions[i].options)}) at {space.decisions[i].span}" for i in missing)
        example = ", ".join(f"{space.decisions[i].name}: {space.decisions[i].options[0]}" for i in missing)
        raise SupernetError(f"a supernet mixes layer and input choices only; {len(missing)} value/depth "
                            f"decision(s) must be fixed: {listed}", space.decisions[missing[0]].span, space.source,
                            hint=f"fix them, e.g. `'+search.fixed={{{example}}}'`, or let them take their first "
                                 f"option with search.unrelaxed=first")
    return result


def _guard_key(guard: Guard) -> Guard | None:
    """The guard as a sorted set of pairs; None when it asks one decision for two options (never built)."""
    pairs = tuple(sorted(set(guard)))
    decisions = [d for d, _ in pairs]
    return None if len(set(decisions)) != len(decisions) else pairs


class Supernet:
    """A space's supernet: its compiled IR, generated source and relaxed decisions (in logits order)."""

    def __init__(self, space: Space, expanded: Graph, graph: Graph, relaxed: tuple[RelaxedDecision, ...],
                 fixed: Mapping[int, int], edge_groups: Sequence[tuple[int, ...]] = (), edge_norm: bool = False,
                 partial_channels: int = 1, registry: OpRegistry | None = None) -> None:
        self.space = space
        self.expanded = expanded      # supernet IR as the expander made it (mixed nodes and guards)
        self.graph = graph            # after the rewrites and passes: shapes, params and MACs in meta
        self.relaxed = relaxed
        self.fixed = dict(fixed)
        self.edge_groups = tuple(edge_groups)  # relaxed decisions each cell node sums (one per group)
        self.edge_norm = edge_norm    # edge_groups[g] has its own logits (edges[g] in the source)
        self.partial_channels = partial_channels
        self.registry = registry or supernet_registry()  # the ops of its IR (the supernet's own included)
        self.source = generate_supernet_source(graph, [len(r.options) for r in relaxed],
                                               [len(g) for g in self.edge_groups] if edge_norm else [],
                                               self.registry)

    @property
    def params(self) -> int:
        return int(self.graph.meta["params"])

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(self.graph.meta.get("warnings", ()))

    def build(self) -> Any:
        """The supernet module (``forward(x, weights=None)``, ``arch_parameters()``, ``weight_parameters()``)."""
        return load_source(self.source, f"<generated supernet {self.graph.name}.py>")["build_model"]()

    def genotype(self, choices: Sequence[int]) -> Genotype:
        """The space's genotype taking ``choices[k]`` for relaxed decision k and the fixed options elsewhere."""
        if len(choices) != len(self.relaxed):
            raise ValueError(f"{len(choices)} choices for {len(self.relaxed)} relaxed decisions")
        genotype = dict(self.fixed)
        genotype.update({r.position: int(c) for r, c in zip(self.relaxed, choices)})
        return self.space.check_genotype([genotype[i] for i in range(len(self.space.decisions))])

    def choices(self, genotype: Sequence[int]) -> tuple[int, ...]:
        """Inverse of ``genotype``: the relaxed decisions' options (the fixed ones must match)."""
        g = self.space.check_genotype(genotype)
        for position, option in self.fixed.items():
            if g[position] != option:
                d = self.space.decisions[position]
                raise ValueError(f"the supernet fixes '{d.name}' to {d.options[option]}, the genotype has "
                                 f"{d.options[g[position]]}")
        return tuple(g[r.position] for r in self.relaxed)

    def cost_table(self, node_cost: NodeCost) -> CostTable:
        return cost_table(self.graph, node_cost)

    def option_costs(self, node_cost: NodeCost) -> list[list[float]]:
        return option_costs(self.graph, [len(r.options) for r in self.relaxed], node_cost)

    def inherit(self, state: Mapping[str, Any], genotype: Sequence[int]) -> dict[str, Any]:
        """The supernet's weights (``state``: its state_dict) for ``space.compile(genotype).build()``.

        Nodes correspond in expansion order (see expand.py), so each layer of the derived model receives the
        parameters and buffers of the supernet layer it came from; auxiliary heads, which the supernet leaves
        out, receive nothing.
        """
        if self.partial_channels != 1:
            raise ValueError("a supernet with partial channel connections computes its options on fewer channels "
                             "than the derived network has: it has no weights to give it")
        choices = self.choices(genotype)
        mine = [n for n in self.expanded.nodes
                if n.op != "mixed" and all(choices[d] == k for d, k in n.meta.get("guard", ()))]
        theirs = self.space.concretize(genotype).nodes
        if [(n.op, dict(n.attrs)) for n in mine] != [(n.op, dict(n.attrs)) for n in theirs]:
            raise RuntimeError("internal error: the supernet's nodes do not correspond to the derived network's")
        partner = {t.name: m.name for m, t in zip(mine, theirs)}
        derived = self.space.compile(genotype).graph
        source_attr = attribute_names(self.graph, TEMPLATE_NAMES)
        target_attr = attribute_names(derived)
        by_attr: dict[str, list[tuple[str, Any]]] = {}   # state keys are "ATTRIBUTE.rest" (self.ATTRIBUTE)
        for key, value in state.items():
            attr, _, rest = key.partition(".")
            by_attr.setdefault(attr, []).append((rest, value))
        result: dict[str, Any] = {}
        for node in derived.nodes:
            source = source_attr.get(partner[node.name])   # None: simplified away (identity), holds no state
            for rest, value in by_attr.get(source, []) if source is not None else []:
                result[f"{target_attr[node.name]}.{rest}"] = value
            if node.op == "bn" and node.attrs["affine"] and f"{target_attr[node.name]}.weight" not in result:
                # a batch norm the supernet ran without affine parameters (option_affine=False): scale 1, shift 0
                channels = node.shape[0]
                result[f"{target_attr[node.name]}.weight"] = torch.ones(channels)
                result[f"{target_attr[node.name]}.bias"] = torch.zeros(channels)
        return result


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


def find_edge_groups(graph: Graph) -> list[tuple[int, ...]]:
    """The relaxed decisions summed by each node: for every `add` with relaxed (mixed) inputs, their decision
    indices, once per distinct group (cells that share decisions give the same group)."""
    producers = {node.name: node for node in graph.nodes}
    groups: list[tuple[int, ...]] = []
    for node in graph.nodes:
        if node.op != "add":
            continue
        group = tuple(producers[i].attrs["decision"] for i in node.inputs if producers[i].op == "mixed")
        if group and group not in groups:
            groups.append(group)
    return groups


def _normalise_edges(graph: Graph, groups: Sequence[tuple[int, ...]]) -> Graph:
    """Every `add` of relaxed edges only becomes an `edge_sum` over its group's logits."""
    producers = {node.name: node for node in graph.nodes}
    nodes = []
    for node in graph.nodes:
        if node.op == "add" and all(producers[i].op == "mixed" for i in node.inputs):
            group = groups.index(tuple(producers[i].attrs["decision"] for i in node.inputs))
            node = dataclasses.replace(node, op="edge_sum", attrs=frozen({"group": group}))
        nodes.append(node)
    return graph.replace_nodes(nodes)


def _without_affine_norms(graph: Graph) -> Graph:
    """Batch norms inside relaxed options (nodes with a guard) without affine parameters."""
    return graph.replace_nodes([dataclasses.replace(n, attrs=frozen({**n.attrs, "affine": False}))
                                if n.op == "bn" and n.meta.get("guard") else n for n in graph.nodes])


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


def _partial_channels(graph: Graph, k: int, layer_decisions: set[int]) -> Graph:
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


def build_supernet(space: Space, fixed: Mapping[str, Any] | None = None, unrelaxed: str = "error",
                   partial_channels: int = 1, edge_norm: bool = False, option_affine: bool = True) -> Supernet:
    """Lower ``space`` to a supernet; shape errors (options that cannot be mixed) are located at the choice.

    ``partial_channels=K`` > 1 computes every relaxed layer choice of one input on 1/K of its channels (PC-DARTS);
    ``edge_norm`` gives every cell node that sums relaxed edges its own softmax over them. ``option_affine=False``
    runs the batch norms inside relaxed options without a learned scale and shift, as DARTS' and NAS-Bench-201's
    search networks do, so that an option's weight in the mixture is its architecture weight alone.
    """
    if partial_channels < 1:
        raise SupernetError(f"partial_channels must be >= 1, not {partial_channels}")
    fixed_options = resolve_fixed(space, fixed, unrelaxed)
    positions = [i for i, d in enumerate(space.decisions) if i not in fixed_options]
    logits_index = {position: k for k, position in enumerate(positions)}

    def decision_at(choice: ast.Choice, namespace: str) -> int:
        return space.sites[(namespace, id(choice))]

    def relax(choice: ast.Choice, namespace: str) -> int | None:
        return logits_index.get(decision_at(choice, namespace))

    def chooser(choice: ast.Choice, namespace: str) -> int:
        position = decision_at(choice, namespace)
        if position not in fixed_options:  # a layer/input decision's label reused on a value: cannot be mixed
            d = space.decisions[position]
            raise SupernetError(f"decision '{d.name}' is relaxed but also chooses a value here", choice.span,
                                space.source, hint=f"fix it, e.g. `'+search.fixed={{{d.name}: {d.options[0]}}}'`")
        return fixed_options[position]

    try:
        expanded = to_graph(space.module, space.source, space.params, space.options, chooser=chooser, relax=relax)
        described = []
        for node in expanded.nodes:
            if node.op == "mixed":
                d = space.decisions[positions[node.attrs["decision"]]]
                node = node.with_meta(what=f"decision '{d.name}': {' | '.join(d.options)}")
            described.append(node)
        expanded = expanded.replace_nodes(described).inference_graph()
        groups = find_edge_groups(expanded)
        rewritten = _normalise_edges(expanded, groups) if edge_norm else expanded
        if not option_affine:
            rewritten = _without_affine_norms(rewritten)
        if partial_channels > 1:
            layers = {k for k, p in enumerate(positions) if space.decisions[p].kind == "layer"}
            rewritten = _partial_channels(rewritten, partial_channels, layers)
        registry = supernet_registry(space.options.registry, partial_channels)
        options = dataclasses.replace(space.options, registry=registry)
        graph = pipeline(options).run(rewritten, space.source)  # the passes only: no model.py of a supernet
    except ArchError as err:
        raise err.with_source(space.source) from None
    sizes = [len(space.decisions[p].options) for p in positions]
    sites = [0] * len(positions)
    zero = [[True] * n for n in sizes]
    for node in graph.nodes:
        if node.op == "mixed":
            k = node.attrs["decision"]
            sites[k] += 1
            for option, producer in enumerate(node.inputs):
                zero[k][option] &= graph.node(producer).op == ZERO_OP
    params = option_costs(graph, sizes, NODE_COSTS["params"])
    relaxed = tuple(RelaxedDecision(p, space.decisions[p], sites[k], tuple(z and sites[k] > 0 for z in zero[k]),
                                    tuple(c == 0 for c in params[k])) for k, p in enumerate(positions))
    return Supernet(space, expanded, graph, relaxed, fixed_options, groups, edge_norm, partial_channels, registry)
