"""The IR: one immutable Node type in a Graph kept in topological order (the torch.fx shape of things).

Passes never mutate a Graph; they build a new one (``Graph.replace_nodes``). ``meta`` holds what passes
derive (``shape``, ``params``, ``macs``); it is excluded from equality, as are source spans, so two graphs are
equal when they describe the same network with the same names.

A graph has one main output and, optionally, named auxiliary outputs (``output aux = ...`` in .arch text): heads
that only training reads, such as DARTS' auxiliary classifier. Evaluation computes the main output only.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Iterable, Iterator, Mapping

from compiler.errors import UNKNOWN_SPAN, Span

Shape = tuple[int, ...]  # per-sample shape: (C, H, W) or (F,); the batch dimension is implied
MAIN_OUTPUT = "main"  # how summaries name a graph's unnamed output; never an auxiliary output's name
_GRAPH_COSTS = ("params", "macs", "activation_elements", "inference_params", "inference_macs")  # whole-graph meta


def frozen(mapping: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """A read-only view of a fresh dict, so nobody edits an IR value shared between candidates."""
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True, eq=False)
class Node:
    name: str                       # unique in the graph; a valid identifier
    op: str                         # a key of the op registry ("input" for graph inputs)
    inputs: tuple[str, ...]         # names of the producing nodes
    attrs: Mapping[str, Any]        # the op's bound arguments, defaults filled in
    span: Span = UNKNOWN_SPAN       # the .arch text it came from
    meta: Mapping[str, Any] = field(default_factory=frozen)  # written by passes (shape, params, macs, ...)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Node) and self.name == other.name and self.op == other.op
                and self.inputs == other.inputs and dict(self.attrs) == dict(other.attrs))

    def __hash__(self) -> int:
        return hash((self.name, self.op, self.inputs))

    @property
    def shape(self) -> Shape:
        """The inferred output shape (only after the shape-inference pass)."""
        try:
            return self.meta["shape"]
        except KeyError:
            raise RuntimeError(f"node {self.name!r} has no shape yet: run infer_shapes first") from None

    def with_meta(self, **updates: Any) -> "Node":
        # Called once per node by every annotating pass: a direct constructor call is ~5x cheaper than
        # dataclasses.replace, which re-reads every field by name.
        return Node(self.name, self.op, self.inputs, self.attrs, self.span, frozen({**self.meta, **updates}))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.attrs.items())
        return f"{self.name} = {self.op}({args}) <- {', '.join(self.inputs)}"


@dataclass(frozen=True, eq=False)
class Graph:
    name: str
    nodes: tuple[Node, ...]          # topological order; the graph inputs are the "input" nodes
    output: str                      # name of the node whose value the model returns
    params: Mapping[str, Any] = field(default_factory=frozen)  # the model parameters it was built with
    span: Span = UNKNOWN_SPAN
    meta: Mapping[str, Any] = field(default_factory=frozen)
    aux_outputs: tuple[tuple[str, str], ...] = ()   # (output name, node name): training-only outputs, in order

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {n.name: n for n in self.nodes})

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Graph) and self.name == other.name and self.output == other.output
                and self.aux_outputs == other.aux_outputs and self.nodes == other.nodes)

    def __hash__(self) -> int:
        return hash((self.name, self.output, self.aux_outputs, len(self.nodes)))

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def node(self, name: str) -> Node:
        return self._index[name]  # type: ignore[attr-defined]

    def __contains__(self, name: object) -> bool:
        return name in self._index  # type: ignore[attr-defined]

    @property
    def inputs(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.op == "input")

    @property
    def output_node(self) -> Node:
        return self.node(self.output)

    @property
    def outputs(self) -> tuple[str, ...]:
        """The nodes the model returns: the main output first, then the auxiliary outputs in order."""
        return (self.output, *(node for _, node in self.aux_outputs))

    def live(self, roots: Iterable[str] | None = None) -> set[str]:
        """Names of the nodes whose values reach ``roots`` (default: every output), the roots included."""
        live = set(self.outputs if roots is None else roots)
        for node in reversed(self.nodes):
            if node.name in live:
                live.update(node.inputs)
        return live

    def inference_nodes(self) -> set[str]:
        """The nodes evaluation runs: those the main output needs (auxiliary heads are training-only)."""
        return self.live((self.output,))

    def inference_graph(self) -> "Graph":
        """What evaluation runs: the main output and the nodes it needs (graph inputs kept), no auxiliary
        outputs. The whole graph's cost totals are left out of its meta (they describe the training graph)."""
        if not self.aux_outputs:
            return self
        keep = self.inference_nodes()
        meta = {k: v for k, v in self.meta.items() if k not in _GRAPH_COSTS}
        return replace(self, nodes=tuple(n for n in self.nodes if n.name in keep or n.op == "input"),
                       aux_outputs=(), meta=frozen(meta))

    def users(self) -> dict[str, list[str]]:
        """For each node, the names of the nodes that consume it (in order)."""
        result: dict[str, list[str]] = {n.name: [] for n in self.nodes}
        for n in self.nodes:
            for i in n.inputs:
                result[i].append(n.name)
        return result

    def replace_nodes(self, nodes: tuple[Node, ...] | list[Node], **changes: Any) -> "Graph":
        return replace(self, nodes=tuple(nodes), **changes)

    def with_meta(self, **updates: Any) -> "Graph":
        return replace(self, meta=frozen({**self.meta, **updates}))

    def __repr__(self) -> str:
        body = "\n  ".join(repr(n) for n in self.nodes)
        aux = "".join(f", {name}={node}" for name, node in self.aux_outputs)
        return f"graph {self.name} -> {self.output}{aux}\n  {body}"
