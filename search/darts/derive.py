"""From architecture weights back to one architecture, and the check for the known DARTS failure (collapse).

Derivation takes, per relaxed decision, the option with the largest probability. With ``exclude_zero`` (DARTS'
rule) an option that is the `zero` op everywhere the decision occurs is never taken: zero's weight only scales the
edge down in the supernet, and an edge that computes nothing is not an architecture choice DARTS reports. (DARTS'
cells additionally keep the two strongest inputs per node; in this project's DARTS space `zero` on an edge is the
way to drop it, and per-decision argmax keeps every edge.)

Collapse: DARTS is known to drift toward parameter-free operations (skip connections, pooling, zero), which
train fastest in the supernet but make weak networks (Zela et al., 2020; Chu et al., 2020). When more than a
threshold share of the layer decisions that could pick an op with parameters derive a parameter-free one, the
search prints a warning located at those decisions in the space file and records it in report.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from compiler.backends.supernet import RelaxedDecision


def derive(relaxed: Sequence[RelaxedDecision], probabilities: Sequence[Sequence[float]],
           exclude_zero: bool = True) -> tuple[int, ...]:
    """The argmax option of each relaxed decision (ties: the first), skipping `zero` options if asked."""
    choices = []
    for decision, p in zip(relaxed, probabilities):
        allowed = [k for k in range(len(p)) if not (exclude_zero and decision.zero[k])] or list(range(len(p)))
        choices.append(max(allowed, key=lambda k: (p[k], -k)))
    return tuple(choices)


@dataclass(frozen=True)
class Collapse:
    """How much of the derived architecture is parameter-free, among decisions where that was a choice."""

    considered: tuple[int, ...]      # relaxed decisions offering both kinds of op
    parameter_free: tuple[int, ...]  # those of them that derived a parameter-free op
    mass: float                      # mean probability on parameter-free options over the considered decisions
    uniform_mass: float              # the same at uniform weights (where the search started)
    threshold: float

    @property
    def share(self) -> float:
        return len(self.parameter_free) / len(self.considered) if self.considered else 0.0

    @property
    def collapsed(self) -> bool:
        return bool(self.considered) and self.share > self.threshold


def collapse(relaxed: Sequence[RelaxedDecision], probabilities: Sequence[Sequence[float]], choices: Sequence[int],
             threshold: float = 0.5) -> Collapse:
    considered = [i for i, r in enumerate(relaxed)
                  if r.decision.kind == "layer" and r.sites and any(r.param_free) and not all(r.param_free)]
    free = [i for i in considered if relaxed[i].param_free[choices[i]]]
    mass = sum(sum(p for p, f in zip(probabilities[i], relaxed[i].param_free) if f) for i in considered)
    uniform = sum(sum(relaxed[i].param_free) / len(relaxed[i].options) for i in considered)
    n = max(len(considered), 1)
    return Collapse(tuple(considered), tuple(free), mass / n, uniform / n, threshold)


def collapse_warning(relaxed: Sequence[RelaxedDecision], choices: Sequence[int], result: Collapse) -> str:
    """The located warning text (``FILE:LINE:COL: warning: ...``) for a collapsed derivation."""
    first = relaxed[result.parameter_free[0]].decision
    listed = ", ".join(f"{relaxed[i].name}={relaxed[i].options[choices[i]]}" for i in result.parameter_free)
    return (f"{first.span}: warning: possible DARTS collapse: {len(result.parameter_free)} of "
            f"{len(result.considered)} decisions ({result.share:.0%}, above the threshold of "
            f"{result.threshold:.0%}) derived a parameter-free op (skip, pooling or zero); mean weight on such ops "
            f"{result.mass:.1%} (uniform: {result.uniform_mass:.1%}): {listed}\n"
            f"  hint: parameter-free ops learn fastest in the supernet, which says little about the network trained "
            f"from scratch; check best/metrics.json, and try search.warmup_epochs > 0 (weights first), another "
            f"search.epochs (they lead early, and skip connections take over late), a smaller search.arch.lr, or "
            f"fixing decisions with search.fixed (threshold: search.derive.collapse_threshold)")
