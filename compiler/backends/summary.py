"""Backend: summary.json (costs, shapes, per-layer table) and the layer table printed by the CLI."""
from __future__ import annotations

import math
import platform
from typing import Any

import torch

from compiler.backends.pytorch import in_place_nodes
from compiler.ir.graph import MAIN_OUTPUT, Graph
from compiler.ir.ops import REGISTRY, OpRegistry


def activation_memory_bytes(graph: Graph, batch_size: int = 1, bytes_per_element: int = 4) -> int:
    """Estimate: every fresh activation kept for backward (an upper bound on training activations)."""
    return int(graph.meta.get("activation_elements", 0)) * batch_size * bytes_per_element


def peak_inference_elements(graph: Graph, registry: OpRegistry = REGISTRY) -> int:
    """Most activation elements (per sample) alive at once while the generated forward() runs in evaluation mode
    (auxiliary heads skipped): a value is freed after its last use, views and in-place activations allocate
    nothing, the graph inputs count."""
    in_place = in_place_nodes(graph, registry)  # decided on the whole graph, as the generated code does
    inference = graph.inference_nodes()
    nodes = [n for n in graph.nodes if n.name in inference or n.op == "input"]
    storage: dict[str, str] = {}           # value -> the node whose allocation holds it
    size: dict[str, int] = {}              # allocation -> elements
    last_use = {n.name: i for i, n in enumerate(nodes)}
    for i, node in enumerate(nodes):
        for name in node.inputs:
            last_use[name] = i
    last_use[graph.output] = len(nodes)
    owners: dict[str, list[str]] = {}      # allocation -> values that alias it
    live = peak = 0
    for i, node in enumerate(nodes):
        spec = registry[node.op]
        allocates = node.op == "input" or (spec.fresh_output and node.name not in in_place)
        storage[node.name] = node.name if allocates else storage[node.inputs[0]]
        if allocates:
            size[node.name] = math.prod(node.shape)
            live += size[node.name]
        owners.setdefault(storage[node.name], []).append(node.name)
        peak = max(peak, live)
        for alloc in {storage[n] for n in (*node.inputs, node.name)}:
            if alloc in size and all(last_use[v] <= i for v in owners[alloc]):
                live -= size.pop(alloc)
    return peak


def analytic_costs(graph: Graph, batch_size: int = 1, bytes_per_element: int = 4,
                   registry: OpRegistry = REGISTRY) -> dict[str, float]:
    """Costs known without running the model, for one batch: parameters, MACs and memory estimates in MiB."""
    params = int(graph.meta["params"])
    return {
        "params": params,
        "macs": int(graph.meta["macs"]) * batch_size,
        "param_memory_mb": params * bytes_per_element / 2**20,
        "train_activation_memory_mb": activation_memory_bytes(graph, batch_size, bytes_per_element) / 2**20,
        "inference_activation_peak_mb":
            peak_inference_elements(graph, registry) * batch_size * bytes_per_element / 2**20,
    }


def summarize(graph: Graph) -> dict[str, Any]:
    inputs = graph.inputs
    peak_mb = peak_inference_elements(graph) * 4 / 2**20  # per sample; computed once, scaled per batch (exact)
    layers = [
        {"name": n.name, "op": n.op, "inputs": list(n.inputs), "attrs": dict(n.attrs),
         "output_shape": list(n.shape), "params": n.meta.get("params", 0), "macs": n.meta.get("macs", 0),
         "source": str(n.span)}
        for n in graph.nodes if n.op != "input"
    ]
    outputs = [{"name": MAIN_OUTPUT, "node": graph.output, "shape": list(graph.output_node.shape),
                "training_only": False}]
    outputs += [{"name": name, "node": node, "shape": list(graph.node(node).shape), "training_only": True}
                for name, node in graph.aux_outputs]
    return {
        "name": graph.name,
        "params": int(graph.meta["params"]),            # everything training builds, auxiliary heads included
        "macs": int(graph.meta["macs"]),
        "inference_params": int(graph.meta.get("inference_params", graph.meta["params"])),  # evaluation only
        "inference_macs": int(graph.meta.get("inference_macs", graph.meta["macs"])),
        "input_shape": list(inputs[0].shape),
        "inputs": {n.name: list(n.shape) for n in inputs},
        "output_shape": list(graph.output_node.shape),
        "outputs": outputs,
        "model_params": dict(graph.params),
        "activation_memory_mb": {
            "fp32_batch1": round(activation_memory_bytes(graph, 1) / 2**20, 3),
            "fp32_batch32": round(activation_memory_bytes(graph, 32) / 2**20, 3),
        },
        "inference_activation_peak_mb": {
            f"fp32_batch{b}": round(peak_mb * b, 3) for b in (1, 32)
        },
        "param_memory_mb_fp32": round(int(graph.meta["params"]) * 4 / 2**20, 3),
        "num_layers": len(layers),
        "layers": layers,
        "warnings": list(graph.meta.get("warnings", ())),
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }


def layer_table(summary: dict[str, Any], max_rows: int | None = None) -> str:
    rows = [("layer", "op", "output", "params", "MACs")]
    layers = summary["layers"]
    if max_rows is None or len(layers) <= max_rows:
        shown = layers
    else:
        shown = layers[: max_rows // 2] + [None] + layers[-max_rows // 2:]
    for layer in shown:
        if layer is None:
            rows.append(("...", "", "", "", ""))
            continue
        rows.append((layer["name"], layer["op"], "x".join(map(str, layer["output_shape"])),
                     f"{layer['params']:,}", f"{layer['macs']:,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for k, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if k == 0:
            lines.append("-" * len(lines[0]))
    inference = summary.get("inference_params", summary["params"])
    at_inference = f" ({inference:,} without the auxiliary outputs)" if inference != summary["params"] else ""
    total = f"{summary['name']}: {summary['params']:,} parameters{at_inference}, {summary['macs']:,} MACs per " \
            f"sample, input {summary['input_shape']} -> output {summary['output_shape']}"
    return "\n".join(lines + ["-" * len(lines[0]), total])
