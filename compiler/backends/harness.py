"""Backend: the standalone profiling harness (profile.py) written next to model.py.

The measuring code is not duplicated: the template includes ``compiler/backends/runtime/measure.py`` whole, the
module the in-process profiler imports. Only the model's class name (a validated identifier) comes from the IR;
the input shape is read from model.py's ``INPUT_SHAPE`` at run time.
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

from compiler.backends.names import class_name
from compiler.backends.pytorch import template
from compiler.ir.graph import Graph


@lru_cache(maxsize=None)
def measure_source() -> str:
    """The shared measuring code (imports, Settings, timing loop, memory meter, report, command line)."""
    return resources.files("compiler.backends.runtime").joinpath("measure.py").read_text(encoding="utf-8")


def generate_harness(graph: Graph) -> str:
    """Source of profile.py for a compiled graph (deterministic)."""
    return template("profile.py.j2").render(model_name=class_name(graph.name), measure_source=measure_source())
