"""Resource limits of the compiler: a hostile or mistaken .arch file is refused before it costs time or memory.

Each limit is checked before (or, for graph size, while) the work it bounds is done, and a refusal is a located
ArchError that names the limit and how to raise it: ``limits.NAME=N`` on the command line (``conf/config.yaml``),
``CompileOptions(limits=Limits(NAME=N))`` in Python. The defaults are far above what real networks need (the
largest example, densenet121, has 428 layers; the DARTS supernet 3,332) and low enough that a bomb is refused in
a fraction of a second.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Mapping

from compiler.errors import ArchError, Span

if TYPE_CHECKING:  # annotations only: the limits sit below the IR (a layer of pyproject.toml's import contracts)
    from compiler.ir.graph import Graph, Node


@dataclass(frozen=True)
class Limits:
    max_source_bytes: int = 1_000_000
    """Size of an .arch file or text in UTF-8 bytes (the examples are 1-4 KB; a printed 10,000-layer network
    is about 500 KB). A file is never read beyond this."""

    max_layers: int = 10_000
    """Layers (IR nodes) of one expanded model or supernet, counted while blocks, loops and repeats expand, so
    that ten nested blocks each used ten times (10^10 layers) stop at the 10,001st."""

    max_steps: int = 100_000
    """Expansion work: statements executed (a loop's body counts once per iteration) plus block instances.
    Bounds loops that make no layers, e.g. nested loops of `let`s."""

    max_loop_trips: int = 10_000
    """Iterations of one `for` loop, checked before the first one runs."""

    max_repeat: int = 10_000
    """The count of one `layer * n`, checked before the first repetition."""

    max_depth: int = 100
    """Nesting depth: of the syntax (each operator of an expression, argument, choice, `if`/`for` body and
    tuple of flows is a level; `let a = 1 + 1 + ... + 1` of 99 terms reaches level 100), counted through block
    instances (compiler/frontend/depth.py). Keeps every recursive step of the compiler far from Python's
    recursion limit."""

    max_inputs: int = 256
    """Values merged by one layer, `(a, b, ...) -> add`: the generated `a + b + ...` must stay far from the
    nesting Python can compile (a few thousand terms)."""

    max_int_bits: int = 64
    """Bits of any integer in an expression or literal; `10 ** 100000000` is refused from its operands' sizes
    before it is computed."""

    max_decisions: int = 1_000
    """Choice points (decisions) of one search space."""

    max_params: int = 1_000_000_000
    """Parameters of a model that is built (weights allocated: exports, profiling, training); 4 GB in fp32.
    A plain compile never allocates weights and does not check this."""

    max_activation_mb: float = 4096.0
    """Activation memory of a model that is built, in MiB per sample in fp32: every fresh tensor of one forward
    pass (what training keeps for backward). Checked with ``max_params``."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 1 \
                    or (f.type == "int" and not float(value).is_integer()) or not math.isfinite(value):
                raise ArchError(f"limit '{f.name}' must be a positive {'integer' if f.type == 'int' else 'number'}, "
                                f"got {value!r}", Span(f"limits.{f.name}", 0, 0))
            object.__setattr__(self, f.name, int(value) if f.type == "int" else float(value))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None, where: str = "limits") -> "Limits":
        """Limits from a config node (``limits:`` in conf/config.yaml); unknown keys are errors."""
        values = dict(values or {})
        names = [f.name for f in fields(cls)]
        for key in values:
            if key not in names:
                raise ArchError(f"unknown limit '{key}'", Span(f"{where}.{key}", 0, 0),
                                f"the limits are: {', '.join(names)}")
        return cls(**{k: v for k, v in values.items() if v is not None})

    def hint(self, name: str, suggested: float | None = None) -> str:
        """How to raise the limit ``name``: on the command line and in Python."""
        current = getattr(self, name)
        value = suggested if suggested is not None else current * 10
        shown = f"{int(value)}" if isinstance(current, int) else f"{value:g}"
        return f"if this is intended, raise the limit: limits.{name}={shown} on the command line, " \
               f"Limits({name}={shown}) in Python (compiler.limits)"


DEFAULT_LIMITS = Limits()


def limit_error(limits: Limits, name: str, message: str, span: Span | None, source: str | None = None,
                needed: float | None = None) -> ArchError:
    """A refusal: ``MESSAGE (limits.NAME = VALUE)`` located at ``span``, with a hint naming how to raise it."""
    current = getattr(limits, name)
    shown = f"{current:,}" if isinstance(current, int) else f"{current:g}"
    return ArchError(f"{message} (limit {name} = {shown})", span, source, limits.hint(name, needed))


def _largest(graph: Graph, key: Any) -> Node:
    return max((n for n in graph.nodes if n.op != "input"), key=key, default=graph.nodes[0])


def check_build(graph: Graph, limits: Limits = DEFAULT_LIMITS) -> None:
    """Before any weights exist: refuse a model whose parameters or activations exceed the limits.

    ``graph`` must have been through the cost analysis (``meta['params']``, ``meta['activation_elements']``).
    The error points at the layer that contributes most.
    """
    params = int(graph.meta.get("params", 0))
    if params > limits.max_params:
        node = _largest(graph, lambda n: n.meta.get("params", 0))
        raise limit_error(limits, "max_params", f"the model has {params:,} parameters ({params * 4 / 2**30:,.1f} "
                          f"GiB in fp32), too many to build; the largest layer is '{node.name}' with "
                          f"{int(node.meta.get('params', 0)):,}", node.span, needed=params)
    activation_mb = int(graph.meta.get("activation_elements", 0)) * 4 / 2**20
    if activation_mb > limits.max_activation_mb:
        node = _largest(graph, lambda n: math.prod(n.meta.get("shape", ())))
        raise limit_error(limits, "max_activation_mb", f"the model's activations take {activation_mb:,.0f} MiB per "
                          f"sample in fp32, too much to run; the largest is '{node.name}' with shape "
                          f"{list(node.meta.get('shape', ()))}", node.span, needed=math.ceil(activation_mb))
