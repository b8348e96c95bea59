"""Ops that exist only inside supernets, in a registry of their own: .arch text can never name them.

``supernet_registry()`` is the global registry (built-in and user ops, as registered when it is called) plus:

* ``mixed`` with the lowering of supernet.py.j2's ``mix(weights[d], [...], active, d)``: all options weighted by
  the decision's probabilities, or, when ``active`` names one option per decision (GDAS), that option alone;
* ``partial_in`` / ``partial_out`` (PC-DARTS, Xu et al. 2020): a relaxed edge computes its options on the first
  1/K of the channels only; the rest bypass it, pooled if the options reduce the resolution, and a channel shuffle
  mixes the two parts so the next edge sees other channels;
* ``edge_sum`` (PC-DARTS' edge normalisation): a cell node sums its incoming edges weighted by a softmax over
  them (``edges[g]``), which keeps the choice of inputs stable while channels are sampled.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from compiler.ir.graph import Shape
from compiler.backends.lowerings import Lowering
from compiler.ir.ops import REGISTRY, Arg, OpRegistry, ShapeError, register_op


def _fmt(shape: Shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _partial_in_shape(a: dict[str, Any], i: Sequence[Shape]) -> Shape:
    k = a["k"]
    if len(i[0]) != 3:
        raise ShapeError(f"partial channel connections need a [channels, height, width] edge input, got {_fmt(i[0])}")
    if i[0][0] % k:
        raise ShapeError(f"search.partial_channels={k} must divide the edge's {i[0][0]} channels")
    return (i[0][0] // k, *i[0][1:])


def _partial_out_shape(a: dict[str, Any], i: Sequence[Shape]) -> Shape:
    (c_part, h, w), (c, h_in, w_in) = i
    k = a["k"]
    if c_part != c // k:
        raise ShapeError(f"options computed on {c // k} of {c} channels gave {c_part}: partial channel connections "
                         f"(search.partial_channels={k}) {_KEEP_CHANNELS}")
    if h_in % h or w_in % w or h_in // h != w_in // w:
        raise ShapeError(f"the bypassed channels ({h_in}x{w_in}) cannot be pooled to the options' {h}x{w}")
    return (c, h, w)


def _mixed_lowering(a: dict[str, Any], i: Sequence[Shape], o: Shape) -> Lowering:
    d = a["decision"]
    return Lowering(None, lambda m, x: f"mix(weights[{d}], [{', '.join(x)}], active, {d})")


_KEEP_CHANNELS = ("need options that keep the channel count; write the edge's ops without a channel count "
                  "(`conv(kernel=3)` keeps the input's), or use search.partial_channels=1")


def _mixed_shape(base: Any, k: int) -> Any:
    """``mixed``'s shape rule; with partial channels, its error says why options changed their channel count."""
    def infer(a: dict[str, Any], i: Sequence[Shape]) -> Shape:
        try:
            return base(a, i)
        except ShapeError as err:
            if k == 1:
                raise
            raise ShapeError(f"{err}; partial channel connections (search.partial_channels={k}) "
                             f"{_KEEP_CHANNELS}") from err
    return infer


def supernet_registry(base: OpRegistry = REGISTRY, partial_channels: int = 1) -> OpRegistry:
    """``base``'s ops (as registered now) with the supernet's own, in a new registry."""
    registry = OpRegistry()
    for name in base.names():
        registry.register(base[name])
    mixed = base["mixed"]
    registry.register(dataclasses.replace(mixed, lower=_mixed_lowering,
                                          infer_shape=_mixed_shape(mixed.infer_shape, partial_channels)), replace=True)
    register_op(
        "partial_in", args=(Arg("k", int, minimum=1),), infer_shape=_partial_in_shape, internal=True,
        lower=lambda a, i, o: Lowering(None, lambda m, x: f"{x[0]}[:, :{o[0]}]"),
        doc="PC-DARTS: the first 1/k of the channels, on which a relaxed edge computes its options.",
        registry=registry)
    register_op(
        "partial_out", args=(Arg("k", int, minimum=1),), num_inputs=2, infer_shape=_partial_out_shape,
        internal=True, fresh_output=True,
        lower=lambda a, i, o: Lowering(None, lambda m, x: f"partial_join({x[0]}, {x[1]}, {a['k']})"),
        doc="PC-DARTS: the mixed options' output, the bypassed channels (max-pooled to its size) concatenated "
            "after it, channels shuffled in k groups.",
        registry=registry)
    register_op(
        "edge_sum", args=(Arg("group", int, minimum=0),), num_inputs=None, infer_shape=base["add"].infer_shape,
        internal=True, fresh_output=True,
        lower=lambda a, i, o: Lowering(None, lambda m, x: f"edge_sum(edges[{a['group']}], [{', '.join(x)}])"),
        doc="PC-DARTS' edge normalisation: the incoming edges weighted by softmax(beta) of the node, summed.",
        registry=registry)
    return registry
