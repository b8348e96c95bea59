"""Cost analysis: parameters and multiply-accumulates per node (meta) and in total (graph meta).

MACs count the multiply-accumulates of convolutions and linear layers for one sample, the figure papers call
"FLOPs"; element-wise ops and pooling count zero. The totals cover every output (what training builds and
runs); ``inference_params`` and ``inference_macs`` leave out the auxiliary, training-only heads.
``check_build`` holds a built model's costs against the limits (``limits.max_params``, ``max_activation_mb``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from compiler.ir.graph import Graph, Node
from compiler.ir.ops import REGISTRY, OpRegistry
from compiler.limits import DEFAULT_LIMITS, Limits, limit_error
from compiler.passes.base import COSTS, SHAPES


@dataclass(frozen=True)
class AnalyseCosts:
    name: ClassVar[str] = "analyse"
    requires: ClassVar[tuple[str, ...]] = (SHAPES,)
    provides: ClassVar[tuple[str, ...]] = (COSTS,)
    invalidates: ClassVar[tuple[str, ...]] = ()
    registry: OpRegistry = REGISTRY

    def apply(self, graph: Graph) -> Graph:
        nodes = []
        total_params = total_macs = activations = inference_params = inference_macs = 0
        inference = graph.inference_nodes()
        for node in graph.nodes:
            spec = self.registry[node.op]
            params, macs = spec.count(node.attrs, node.meta["input_shapes"], node.shape)
            total_params += params
            total_macs += macs
            if node.name in inference:
                inference_params += params
                inference_macs += macs
            if spec.fresh_output:
                activations += math.prod(node.shape)
            nodes.append(node.with_meta(params=int(params), macs=int(macs)))
        return graph.replace_nodes(nodes).with_meta(params=total_params, macs=total_macs,
                                                    activation_elements=activations,
                                                    inference_params=inference_params,
                                                    inference_macs=inference_macs)


def _largest(graph: Graph, key: Any) -> Node:
    return max((n for n in graph.nodes if n.op != "input"), key=key, default=graph.nodes[0])


def check_build(graph: Graph, limits: Limits = DEFAULT_LIMITS) -> None:
    """Before any weights exist: refuse a model whose parameters or activations exceed the limits.

    ``graph`` must have been through this cost analysis (``meta['params']``, ``meta['activation_elements']``).
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
