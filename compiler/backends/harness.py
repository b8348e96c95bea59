"""Backend: the standalone profiling harness (profile.py) written next to model.py.

The measuring code is not duplicated: the template embeds, verbatim, the marked section of
``compiler/profiling/measure.py``, which the in-process profiler imports. Only the model's class name (a
validated identifier) comes from the IR; the input shape is read from model.py's ``INPUT_SHAPE`` at run time.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from compiler.backends.names import class_name
from compiler.backends.pytorch import template
from compiler.ir.graph import Graph
from compiler.profiling import measure

_SECTION = re.compile(r"^# --- harness:begin ---\n(.*?)^# --- harness:end ---\n", re.S | re.M)


@lru_cache(maxsize=None)
def measure_source() -> str:
    """The shared measuring code (imports, Settings, timing loop, memory meter, report, command line)."""
    text = Path(measure.__file__).read_text(encoding="utf-8")
    found = _SECTION.search(text)
    if found is None:
        raise RuntimeError(f"{measure.__file__} lost its harness:begin/harness:end markers")
    return found.group(1).strip() + "\n"


def generate_harness(graph: Graph) -> str:
    """Source of profile.py for a compiled graph (deterministic)."""
    return template("profile.py.j2").render(model_name=class_name(graph.name), measure_source=measure_source())
