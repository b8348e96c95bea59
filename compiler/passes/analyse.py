"""Cost analysis: parameters and multiply-accumulates per node (meta) and in total (graph meta).

MACs count the multiply-accumulates of convolutions and linear layers for one sample, the figure papers call
"FLOPs"; element-wise ops and pooling count zero. The totals cover every output (what training builds and
runs); ``inference_params`` and ``inference_macs`` leave out the auxiliary, training-only heads.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from compiler.ir.graph import Graph
from compiler.ir.ops import REGISTRY, OpRegistry
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
