"""From architecture weights back to one architecture, and the check for the known DARTS failure (collapse).

Derivation takes, per relaxed decision, the option with the largest probability. With ``exclude_zero`` (DARTS'
rule) an option that is the `zero` op everywhere the decision occurs is never taken: zero's weight only scales the
edge down in the supernet, and an edge that computes nothing is not an architecture choice DARTS reports.
``keep_strongest`` then applies DARTS' other rule (``search.derive.top_inputs=2``): a node that sums several relaxed
edges keeps its k strongest (an edge's strength: its largest non-zero option probability, times the edge's own
weight where PC-DARTS' edge normalisation gives it one) and the others derive `zero`, which is how this project's
DARTS space drops an edge.

Collapse: DARTS is known to drift toward parameter-free operations (skip connections, pooling, zero), which
train fastest in the supernet but make weak networks (Zela et al., 2020; Chu et al., 2020). When more than a
threshold share of the layer decisions that could pick an op with parameters derive a parameter-free one, the
search prints a warning located at those decisions in the space file and records it in report.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from compiler.supernet import RelaxedDecision


def derive(relaxed: Sequence[RelaxedDecision], probabilities: Sequence[Sequence[float]],
           exclude_zero: bool = True) -> tuple[int, ...]:
    """The argmax option of each relaxed decision (ties: the first), skipping `zero` options if asked."""
    choices = []
    for decision, p in zip(relaxed, probabilities):
        allowed = [k for k in range(len(p)) if not (exclude_zero and decision.zero[k])] or list(range(len(p)))
        choices.append(max(allowed, key=lambda k: (p[k], -k)))
    return tuple(choices)


def edge_strengths(relaxed: Sequence[RelaxedDecision], probabilities: Sequence[Sequence[float]],
                   groups: Sequence[Sequence[int]], edge_probabilities: Sequence[Sequence[float]] | None = None
                   ) -> list[float]:
    """Each relaxed decision's strength as an edge: its largest non-zero option probability, times its weight
    among its node's edges where edges are normalised (PC-DARTS: ``edge_probabilities[g]`` for ``groups[g]``)."""
    strengths = [max((p for p, z in zip(probabilities[d], relaxed[d].zero) if not z), default=0.0)
                 for d in range(len(relaxed))]
    for group, weights in zip(groups, edge_probabilities or ()):
        for d, w in zip(group, weights):
            strengths[d] *= w
    return strengths


def keep_strongest(relaxed: Sequence[RelaxedDecision], strengths: Sequence[float], choices: Sequence[int],
                   groups: Sequence[Sequence[int]], k: int) -> tuple[int, ...]:
    """``choices`` with every group's edges beyond its ``k`` strongest (``edge_strengths``) set to their `zero`
    option. An edge without a `zero` option cannot be dropped and always counts among the kept."""
    result = list(choices)
    for group in groups:
        droppable = [d for d in group if any(relaxed[d].zero)]
        fixed = len(group) - len(droppable)
        ranked = sorted(droppable, key=lambda d: (-strengths[d], group.index(d)))
        for d in ranked[max(0, k - fixed):]:
            result[d] = relaxed[d].zero.index(True)
    return tuple(result)


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
