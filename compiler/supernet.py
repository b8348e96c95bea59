"""A search space lowered to a supernet, for differentiable architecture search (DARTS).

Layer and input decisions are relaxed: the expander's supernet mode (``compiler/frontend/expand.py``) expands every
option of such a choice and joins them in one ``mixed`` node, which the supernet computes as
``sum_k softmax(alpha)_k * option_k``, with one logits vector per decision shared by all the places it occurs.
Value and depth decisions change the structure of the network (widths, repeat counts) and cannot be mixed; the
caller fixes them (``fixed``: decision name -> option), or picks their first option (``unrelaxed="first"``), or
gets an error that lists them. A fixed layer decision is simply not relaxed. A space's auxiliary outputs
(training-only heads) are left out of the supernet: the search trains the main output.

This module sits beside ``compiler/space.py``, above the api: it expands the space's program, runs the rewrites and
passes, and hands the IR to the backend that writes the source (``compiler/backends/supernet.py``).
"""
from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from compiler.api import load_source, pipeline, to_graph
from compiler.backends.pytorch import attribute_names
from compiler.backends.supernet import (NODE_COSTS, TEMPLATE_NAMES, ZERO_OP, CostTable, NodeCost,
                                        cost_table, find_edge_groups, generate_supernet_source, normalise_edges,
                                        option_costs, partial_channel_connections, without_affine_norms)
from compiler.backends.supernet_ops import supernet_registry
from compiler.errors import ArchError
from compiler.frontend import ast
from compiler.ir.graph import Graph
from compiler.passes.analyse import check_build
from compiler.ir.ops import OpRegistry
from compiler.space import Decision, Genotype, Space

RELAXABLE = ("layer", "input")  # decision kinds a supernet mixes; value and depth decisions are fixed


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
        """The supernet module (``forward(x, weights=None)``, ``arch_parameters()``, ``weight_parameters()``).
        Its size is checked against the space's limits first, as for every model (``CompileResult.build``)."""
        check_build(self.graph, self.space.options.limits)
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
            if node.attrs.get("affine") is True and f"{target_attr[node.name]}.weight" not in result:
                # a norm the supernet ran without affine parameters (option_affine=False): scale 1, shift 0
                channels = node.shape[0]
                result[f"{target_attr[node.name]}.weight"] = torch.ones(channels)
                result[f"{target_attr[node.name]}.bias"] = torch.zeros(channels)
        return result


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
        return space.decision_at(namespace, choice.site)

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
        groups = find_edge_groups(expanded, space.options.registry)
        rewritten = normalise_edges(expanded, groups, space.options.registry) if edge_norm else expanded
        if not option_affine:
            rewritten = without_affine_norms(rewritten)
        if partial_channels > 1:
            layers = {k for k, p in enumerate(positions) if space.decisions[p].kind == "layer"}
            rewritten = partial_channel_connections(rewritten, partial_channels, layers)
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
