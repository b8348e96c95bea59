"""The pass pipeline: the passes by name, the default list, and the check that a list can work.

The default, ``DEFAULT_PASSES``, is what every model goes through before code generation:

    verify        structural invariants of the IR the frontend made (names, order, registered ops)
    dce           drop layers whose value reaches no output, with a located warning
    infer_shapes  every node's shape; a mismatch is an error at the user's line
    simplify      forward identities, drop zeros from sums (keyed on op flags, never on names)
    dce           drop what simplification left unread (silently: it is not the user's dead code)
    analyse       parameters and MACs per layer and in total

Another list is given as ``passes=[...]`` on the command line (``conf/config.yaml``) or ``CompileOptions(passes=
...)`` in Python. Names are checked first, and then the facts: each pass declares what it requires and provides
(``base.py``), and a list in which a pass would run without what it needs, or that leaves the code generator
without shapes and costs, is refused with a message saying which pass to add where.
"""
from __future__ import annotations

import difflib
from dataclasses import fields
from functools import partial
from typing import Any, Mapping, Sequence

from compiler.errors import ArchError, Span
from compiler.ir.ops import REGISTRY, OpRegistry
from compiler.passes.analyse import AnalyseCosts
from compiler.passes.base import COSTS, SHAPES, Pass, PassManager
from compiler.passes.dce import EliminateDeadCode
from compiler.passes.shapes import InferShapes
from compiler.passes.simplify import Simplify
from compiler.passes.verify import Verify, verify

PASSES: Mapping[str, Any] = {t.name: t for t in (Verify, EliminateDeadCode, InferShapes, Simplify, AnalyseCosts)}
DEFAULT_PASSES: tuple[str, ...] = ("verify", "dce", "infer_shapes", "simplify", "dce", "analyse")
CODEGEN_NEEDS: tuple[str, ...] = (SHAPES, COSTS)   # the backends write shapes into the code, costs into summaries
_PROVIDER = {fact: name for name, t in PASSES.items() for fact in t.provides}

WHERE = Span("passes", 0, 0)   # errors point at the config key (``CompileOptions.passes`` in Python)


def _hint() -> str:
    return f"the passes are {', '.join(PASSES)}; the default is [{','.join(DEFAULT_PASSES)}]"


def check_passes(names: Any, needs: Sequence[str] = CODEGEN_NEEDS) -> tuple[str, ...]:
    """``names`` as a tuple of known pass names in an order that can work, or an ArchError saying why not."""
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        raise ArchError(f"passes must be a list of pass names, got {names!r}", WHERE, hint=_hint())
    names = tuple(names)
    for name in names:
        if not isinstance(name, str) or name not in PASSES:
            close = difflib.get_close_matches(str(name), list(PASSES), n=1)
            guess = f"did you mean '{close[0]}'? " if close else ""
            raise ArchError(f"unknown pass {name!r}", WHERE, hint=guess + _hint())
    have: set[str] = set()
    for position, name in enumerate(names, start=1):
        kind = PASSES[name]
        missing = [fact for fact in kind.requires if fact not in have]
        if missing:
            raise ArchError(f"pass '{name}' (number {position}) needs {_facts(missing)}, which no pass before it "
                            f"provides", WHERE, hint=f"put {_providers(missing)} before it; " + _hint())
        have -= set(kind.invalidates)
        have |= set(kind.provides)
    missing = [fact for fact in needs if fact not in have]
    if missing:
        raise ArchError(f"the passes leave the IR without {_facts(missing)}, which code generation needs",
                        WHERE, hint=f"end the list with {_providers(missing)} (after any pass that rewrites the "
                                    f"graph); " + _hint())
    return names


def _facts(facts: Sequence[str]) -> str:
    return " and ".join(facts)


def _providers(facts: Sequence[str]) -> str:
    return " and ".join(f"'{_PROVIDER[f]}'" for f in facts)


def build_pipeline(names: Sequence[str] = DEFAULT_PASSES, registry: OpRegistry = REGISTRY,
                   debug: bool = False, needs: Sequence[str] = CODEGEN_NEEDS) -> PassManager:
    """The checked list as a PassManager; ``debug`` verifies the IR after every pass."""
    names = check_passes(names, needs)
    return PassManager([make_pass(n, registry) for n in names], debug=debug,
                       verifier=partial(verify, registry=registry))


def make_pass(name: str, registry: OpRegistry = REGISTRY) -> Pass:
    """The pass named ``name``, reading ops from ``registry`` where it needs them."""
    kind = PASSES[name]
    return kind(registry=registry) if any(f.name == "registry" for f in fields(kind)) else kind()
