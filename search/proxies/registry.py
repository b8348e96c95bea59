"""The proxies by name, and one call that scores a network with several of them.

A *computation* gives one or more proxies from one piece of work: ``grad_norm`` and ``snip`` come from one
backward pass of the loss, and the forward pass of ``jacob_cov`` also records ``naswot``'s ReLU codes. A
computation runs when one of its *triggers* is asked for and not yet scored, in the order listed, so asking for
``naswot`` and ``jacob_cov`` together costs one forward/backward pass, and ``naswot`` alone only a forward pass.
Each computation runs under its own fork of the RNG seeded with ``seed``, so a score depends only on (network,
minibatch, seed), not on what ran before; the caller's model and RNG state are left as they were.

    result = measure_proxies(["synflow", "naswot", "params"], model=compiled.build(), inputs=x, targets=y,
                             summary=compiled.summary, seed=0)
    result.scores        # {"synflow": ..., "naswot": ..., "params": ...}; higher is better, -inf is the worst
    result.seconds       # wall time of each computation that ran: {"synflow": ..., "naswot": ..., "params": ...}
    result.cpu_seconds   # this process's CPU time for each (on a shared CPU, closer to an idle machine's time)
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from search.proxies import cost
from search.proxies.base import finite_or_worst
from search.proxies.gradients import loss_gradient_scores, zico
from search.proxies.jacob_cov import jacobian_and_codes_scores
from search.proxies.naswot import naswot
from search.proxies.synflow import synflow


@dataclass(frozen=True)
class Probe:
    """What a proxy may look at: the built network, one minibatch, the compiler's summary."""

    model: nn.Module | None = None
    inputs: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    summary: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Proxy:
    name: str
    needs: tuple[str, ...]   # the Probe fields it reads
    reference: str           # where the definition comes from (details in the module that computes it)


@dataclass(frozen=True)
class Computation:
    name: str
    triggers: tuple[str, ...]                 # it runs when one of these is asked for and not yet scored
    gives: tuple[str, ...]                    # what it returns: the triggers and any by-products
    run: Callable[[Probe], dict[str, float]]  # -> {proxy: score} for ``gives``


PROXIES: dict[str, Proxy] = {p.name: p for p in (
    Proxy("synflow", ("model", "inputs"), "Tanaka et al. 2020; Abdelfattah et al. 2021"),
    Proxy("naswot", ("model", "inputs"), "Mellor et al., ICML 2021"),
    Proxy("grad_norm", ("model", "inputs", "targets"), "Abdelfattah et al. 2021"),
    Proxy("snip", ("model", "inputs", "targets"), "Lee et al. 2019; Abdelfattah et al. 2021"),
    Proxy("jacob_cov", ("model", "inputs"), "Mellor et al. 2020 (v1); Abdelfattah et al. 2021"),
    Proxy("zico", ("model", "inputs", "targets"), "Li et al., ICLR 2023"),
    Proxy("params", ("summary",), "the compiler's cost analysis"),
    Proxy("macs", ("summary",), "the compiler's cost analysis"),
)}


def _data(p: Probe) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The network and the minibatch (measure_proxies has checked each proxy's needs; targets may be unused)."""
    assert p.model is not None and p.inputs is not None
    return p.model, p.inputs, p.targets if p.targets is not None else torch.empty(0)


def _summary(p: Probe) -> Mapping[str, Any]:
    assert p.summary is not None
    return p.summary


COMPUTATIONS: tuple[Computation, ...] = (
    Computation("jacobian", ("jacob_cov",), ("jacob_cov", "naswot"),
                lambda p: jacobian_and_codes_scores(*_data(p)[:2])),
    Computation("naswot", ("naswot",), ("naswot",), lambda p: {"naswot": naswot(*_data(p)[:2])}),
    Computation("synflow", ("synflow",), ("synflow",), lambda p: {"synflow": synflow(*_data(p)[:2])}),
    Computation("loss_gradients", ("grad_norm", "snip"), ("grad_norm", "snip"),
                lambda p: loss_gradient_scores(*_data(p))),
    Computation("zico", ("zico",), ("zico",), lambda p: {"zico": zico(*_data(p))}),
    Computation("params", ("params",), ("params",), lambda p: {"params": cost.params(_summary(p))}),
    Computation("macs", ("macs",), ("macs",), lambda p: {"macs": cost.macs(_summary(p))}),
)


@dataclass(frozen=True)
class ProxyResult:
    scores: dict[str, float]                                     # proxy -> score (higher is better; -inf worst)
    seconds: dict[str, float] = field(default_factory=dict)      # computation -> wall time
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # computation -> this process's CPU time


def check_names(names: Sequence[str]) -> list[str]:
    """``names`` without repeats, or a ValueError naming the unknown ones and the known ones."""
    unknown = [n for n in names if n not in PROXIES]
    if unknown:
        raise ValueError(f"unknown proxy {', '.join(map(repr, unknown))}; the proxies are {', '.join(PROXIES)}")
    return list(dict.fromkeys(names))


def plan(names: Sequence[str]) -> list[Computation]:
    """The computations that give ``names``, in the order they run."""
    wanted, chosen = set(check_names(names)), []
    for computation in COMPUTATIONS:
        if wanted & set(computation.triggers):
            chosen.append(computation)
            wanted -= set(computation.gives)
    return chosen


def measure_proxies(names: Sequence[str], *, model: nn.Module | None = None, inputs: torch.Tensor | None = None,
                    targets: torch.Tensor | None = None, summary: Mapping[str, Any] | None = None,
                    seed: int = 0) -> ProxyResult:
    """Score one network with the proxies ``names`` (see the module docstring); the device is the inputs'."""
    names = check_names(names)
    probe = Probe(model, inputs, targets, summary)
    for name in names:
        missing = [f for f in PROXIES[name].needs if getattr(probe, f) is None]
        if missing:
            raise ValueError(f"proxy {name!r} needs {', '.join(missing)}")
    device = inputs.device if inputs is not None else torch.device("cpu")
    scores: dict[str, float] = {}
    seconds: dict[str, float] = {}
    cpu_seconds: dict[str, float] = {}
    for computation in plan(names):
        start, cpu_start = time.perf_counter(), time.process_time()
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            scores.update(computation.run(probe))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds[computation.name] = time.perf_counter() - start
        cpu_seconds[computation.name] = time.process_time() - cpu_start
    return ProxyResult({n: finite_or_worst(scores[n]) for n in names}, seconds, cpu_seconds)


def score_proxies(names: Sequence[str], **probe: Any) -> dict[str, float]:
    """``measure_proxies(names, ...).scores``."""
    return measure_proxies(names, **probe).scores
