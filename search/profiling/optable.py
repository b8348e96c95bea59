"""Per-op latency lookup tables: (op type, attributes, input shapes) x batch size -> milliseconds on one device.

Each distinct op is measured once, in isolation: the compiler lowers a one-node graph (the node with fresh graph
inputs of its input shapes) to PyTorch exactly as it lowers whole models, and the harness's timing loop measures
it. The cost of calling an empty model (``overhead``) is measured too, so that a model's prediction counts the
call overhead once rather than once per op (see ``predictor.py``).

An entry is ``{"ms": median latency}``; on a GPU it also holds ``host_ms`` (the host's time to issue the op's
kernels) and ``device_ms`` (the kernels' time on the device), which the predictor needs because the two overlap
inside a network (see ``measure.time_host_and_device``).
"""
from __future__ import annotations

import copy
import itertools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from compiler.api import CompileResult, compile_graph
from compiler.errors import ArchError, Span
from compiler.ir.graph import Graph, Node, frozen
from search.profiling.cache import device_fingerprint
from compiler.backends.runtime.measure import (DTYPES, Settings, make_inputs, percentile, pinned, prepare_module,
                                        time_host_and_device, time_iterations)

TABLE_VERSION = 2
OVERHEAD = "overhead"  # the table row of an empty model (input -> identity)
MAX_COPIES = 64        # most instances an op cycles through when measured with cold caches


def op_key(node: Node) -> str:
    """What an op's latency depends on, as a stable string: op type, attributes, per-sample input shapes."""
    shapes = [list(s) for s in node.meta["input_shapes"]]
    return json.dumps([node.op, sorted(node.attrs.items()), shapes], separators=(",", ":"))


def single_op_graph(node: Node) -> Graph:
    """A graph holding just ``node``, fed by graph inputs of its input shapes."""
    inputs = [Node(f"x{i}", "input", (), frozen({"shape": tuple(s)})) for i, s in enumerate(node.meta["input_shapes"])]
    op = Node("op", node.op, tuple(n.name for n in inputs), node.attrs, node.span)
    return Graph(f"op_{node.op}", (*inputs, op), "op")


def overhead_graph() -> Graph:
    x = Node("x", "input", (), frozen({"shape": (1,)}))
    return Graph("empty", (x, Node("op", "identity", ("x",), frozen())), "op")


def _rotating_step(result: CompileResult, batch_size: int, settings: Settings, copies: int) -> Callable[[], Any]:
    """A call of the compiled graph's module on fresh inputs; ``copies`` > 1 cycles through that many instances
    (own weights, own inputs), so that each call finds its data out of the nearest caches, as an op inside a whole
    model does, rather than hot from its last call."""
    device = torch.device(settings.device)
    shapes = [n.shape for n in result.graph.inputs]
    model, runner = prepare_module(result.build(), settings)
    calls = [(runner, make_inputs(shapes, batch_size, device, settings))]
    for _ in range(copies - 1):  # copies of the first: new memory without initialising weights again
        calls.append((prepare_module(copy.deepcopy(model), settings)[1],
                      make_inputs(shapes, batch_size, device, settings)))
    turn = itertools.cycle(calls)

    def step() -> Any:
        runner, inputs = next(turn)
        return runner(*inputs)
    return step


def measure_compiled_ms(result: CompileResult, batch_size: int, settings: Settings, copies: int = 1) -> float:
    """Median inference latency (ms) of a compiled graph at one batch size, with the harness's timing loop."""
    with torch.no_grad(), pinned(settings.cpu):
        step = _rotating_step(result, batch_size, settings, copies)
        return percentile(time_iterations(step, torch.device(settings.device), settings).samples_ms, 50)


def measure_entry(result: CompileResult, batch_size: int, settings: Settings, copies: int = 1) -> dict[str, float]:
    """A table entry: the median latency, and on a GPU also the host's and the device's time per call."""
    device = torch.device(settings.device)
    with torch.no_grad(), pinned(settings.cpu):
        step = _rotating_step(result, batch_size, settings, copies)
        entry = {"ms": percentile(time_iterations(step, device, settings).samples_ms, 50)}
        if device.type == "cuda":
            entry["host_ms"], entry["device_ms"] = time_host_and_device(step, device, settings)
    return entry


def footprint_bytes(node: Node, batch_size: int, settings: Settings) -> int:
    """Bytes an op touches per call: its weights, inputs and output."""
    elements = node.meta.get("params", 0) + batch_size * (
        sum(math.prod(s) for s in node.meta["input_shapes"]) + math.prod(node.shape))
    return elements * DTYPES[settings.dtype].itemsize


@dataclass
class LatencyTable:
    """Measured op latencies for one device and one set of settings (dtype, layout, threads)."""

    device: str                                    # device fingerprint (model, versions, threads)
    settings: dict[str, Any]                       # Settings.key() of the measurements, batch sizes left out
    entries: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # op key -> {batch: entry}
    calibration: dict[str, float] = field(default_factory=dict)  # batch -> scale fitted on whole models

    @classmethod
    def for_settings(cls, settings: Settings, rotate_mb: float = 0.0) -> "LatencyTable":
        """An empty table. ``rotate_mb``: time each op cycling through copies that together touch at least this
        many MB (more than the device's per-core cache), so ops are measured with cold caches as inside a model."""
        if settings.train:
            raise ValueError("latency tables cover inference only; set train=False")
        key = {k: v for k, v in settings.key().items() if k != "batch_sizes"}
        return cls(device_fingerprint(settings.device, settings.threads), {**key, "rotate_mb": rotate_mb})

    @property
    def rotate_bytes(self) -> float:
        return float(self.settings.get("rotate_mb", 0.0)) * 2**20

    def entry(self, key: str, batch_size: int) -> dict[str, float] | None:
        return self.entries.get(key, {}).get(str(batch_size))

    def get(self, key: str, batch_size: int) -> float | None:
        """The median latency (ms) of an op, or None when it was not measured."""
        found = self.entry(key, batch_size)
        return None if found is None else found["ms"]

    def put(self, key: str, batch_size: int, entry: dict[str, float] | float) -> None:
        self.entries.setdefault(key, {})[str(batch_size)] = entry if isinstance(entry, dict) else {"ms": entry}

    def overhead(self, batch_size: int) -> float | None:
        return self.get(OVERHEAD, batch_size)

    def check_compatible(self, settings: Settings) -> None:
        other = LatencyTable.for_settings(settings, self.settings.get("rotate_mb", 0.0))
        if (other.device, other.settings) != (self.device, self.settings):
            raise ValueError(f"the latency table was measured on '{self.device}' with {self.settings}, not on "
                             f"'{other.device}' with {other.settings}; build a table for these settings")

    # ---- persistence ----------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"version": TABLE_VERSION, "device": self.device, "settings": self.settings, "entries": self.entries,
                "calibration": self.calibration}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "LatencyTable":
        if not isinstance(data, dict) or any(k not in data for k in ("device", "settings", "entries")):
            raise ValueError("not a latency table (a JSON object with version, device, settings and entries)")
        if data.get("version") != TABLE_VERSION:
            raise ValueError(f"latency table version {data.get('version')!r} is not {TABLE_VERSION}; rebuild it")
        return cls(data["device"], data["settings"],
                   {k: {b: dict(e) for b, e in v.items()} for k, v in data["entries"].items()},
                   dict(data.get("calibration", {})))

    def save(self, path: str | Path) -> Path:
        """Write atomically (a crash never leaves half a table)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        """The table saved at ``path``; a file that is not one (damaged, of another version) is a located error."""
        try:
            text = Path(path).read_text()
        except FileNotFoundError:
            raise FileNotFoundError(f"no latency table at '{path}': build one with "
                                    f"`python -m compiler task=profile_ops device=cpu|cuda`") from None
        hint = f"delete it and build it again: `python -m compiler task=profile_ops device=cpu|cuda task.table={path}`"
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ArchError(f"not a latency table: not valid JSON ({err.msg})", Span(str(path), err.lineno, err.colno),
                            hint=hint) from err
        try:
            return cls.from_json(data)
        except (ValueError, TypeError, AttributeError) as err:  # a JSON value of another shape than a table's
            raise ArchError(str(err).removesuffix("; rebuild it"), Span(str(path), 0, 0), hint=hint) from err


def distinct_ops(graphs: Iterable[Graph]) -> dict[str, Node]:
    """One representative node per op key over all the graphs (graph inputs excluded)."""
    found: dict[str, Node] = {}
    for graph in graphs:
        for node in graph.nodes:
            if node.op != "input":
                found.setdefault(op_key(node), node)
    return found


def fill_table(table: LatencyTable, graphs: Iterable[Graph], batch_sizes: Iterable[int], settings: Settings,
               progress: Callable[[int, int], None] | None = None, rounds: int = 1) -> int:
    """Measure every op of ``graphs`` (and the empty-model overhead) the table lacks; returns how many.

    ``rounds`` > 1 measures them all that many times, in passes one after the other, and keeps each figure's
    lowest: other work on the machine and slow phases of a virtual machine's host only ever slow a measurement
    down, and an entry measured once keeps whatever it met (seen on the H200 VM: one op type's entries 1.5x apart)."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    table.check_compatible(settings)
    sizes = list(batch_sizes)
    todo: list[tuple[str, Graph, int, int]] = [(OVERHEAD, overhead_graph(), b, 1) for b in sizes
                                               if table.overhead(b) is None]
    for key, node in distinct_ops(graphs).items():
        for b in sizes:
            if table.get(key, b) is None:
                copies = min(MAX_COPIES, max(1, math.ceil(table.rotate_bytes / footprint_bytes(node, b, settings))))
                todo.append((key, single_op_graph(node), b, copies))
    compiled: dict[str, CompileResult] = {}
    best: dict[tuple[str, int], dict[str, float]] = {}
    done = 0
    for _ in range(rounds):
        for key, graph, batch, copies in todo:
            if key not in compiled:
                compiled[key] = compile_graph(graph)
            entry = measure_entry(compiled[key], batch, settings, copies)
            kept = best.setdefault((key, batch), entry)
            for name, value in entry.items():
                kept[name] = min(kept[name], value)
            done += 1
            if progress is not None:
                progress(done, len(todo) * rounds)
    for (key, batch), entry in best.items():
        table.put(key, batch, entry)
    return len(todo)
