"""The one-shot cost constraint: a differentiable expected cost of the architecture the logits describe.

``E[cost] = sum over guards g of cost(g) * prod_{(d, k) in g} p_d[k]``, where a guard is the set of (decision,
option) pairs a supernet node exists under (see ``compiler/backends/supernet.py``) and ``p_d = softmax(alpha_d)``.
For the usual cell spaces every guard is one pair, and this is ``sum_d p_d . cost_d`` with ``cost_d`` the cost of
each option; nested choices multiply their probabilities, so the figure is exactly the expected cost of an
architecture drawn from the per-decision softmaxes. The search adds ``weight * E[cost]`` to the architecture loss.

A node's cost comes from the IR analysis pass (parameters, MACs) or from a per-op latency table
(``search.profiling.optable``, built by ``python -m compiler task=profile_ops``): any ``Node -> float`` fits.
"""
from __future__ import annotations

from typing import Sequence

import torch

from compiler.backends.supernet import NODE_COSTS, ZERO_OP, NodeCost
from compiler.supernet import Supernet
from compiler.ir.graph import Node
from search.darts.config import CostConfig, DartsConfigError


class LatencyTableCost:
    """A node's latency from a per-op table: its isolated time less the table's call overhead (as the
    predictor sums them). ``zero`` nodes cost nothing: derived networks drop those edges."""

    def __init__(self, path: str, batch_size: int = 1) -> None:
        from search.profiling.optable import LatencyTable, op_key  # read-only use of the profiling package
        try:
            self.table = LatencyTable.load(path)
        except (FileNotFoundError, ValueError) as err:
            raise DartsConfigError("cost.table", str(err)) from err
        self.key = op_key
        self.batch_size = batch_size
        self.overhead = self.table.overhead(batch_size) or 0.0
        self.missing: list[str] = []

    def __call__(self, node: Node) -> float:
        if node.op == ZERO_OP:
            return 0.0
        ms = self.table.get(self.key(node), self.batch_size)
        if ms is None:
            self.missing.append(f"{node.name} ({node.op})")
            return 0.0
        return ms - self.overhead


def node_cost(cfg: CostConfig) -> NodeCost:
    if cfg.metric == "latency":
        return LatencyTableCost(str(cfg.table), cfg.batch_size)
    return NODE_COSTS[cfg.metric]


class ExpectedCost:
    """``weights -> E[cost]`` (a scalar tensor), from a supernet's cost table; ``normalize`` divides by the
    expected cost at uniform weights, so the penalty weight reads as "a fraction of the loss per unit of cost"."""

    def __init__(self, table: dict[tuple[tuple[int, int], ...], float], sizes: Sequence[int],
                 normalize: bool = True) -> None:
        self.terms = [(guard, cost) for guard, cost in table.items() if guard and cost != 0.0]
        self.constant = table.get((), 0.0)   # what every architecture has (the stem, the classifier, ...)
        uniform = [torch.full((n,), 1.0 / n, dtype=torch.float64) for n in sizes]
        self.scale = 1.0
        if normalize:
            reference = float(self.expected(uniform))
            self.scale = 1.0 / reference if reference > 0 else 1.0

    def expected(self, weights: Sequence[torch.Tensor]) -> torch.Tensor:
        """E[cost] in the metric's own unit (MACs, parameters, ms), constant part included."""
        total = weights[0].new_tensor(self.constant) if weights else torch.tensor(self.constant)
        for guard, cost in self.terms:
            p = weights[guard[0][0]][guard[0][1]]
            for d, k in guard[1:]:
                p = p * weights[d][k]
            total = total + cost * p
        return total

    def __call__(self, weights: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.expected(weights) * self.scale


def build_penalty(supernet: Supernet, cfg: CostConfig) -> ExpectedCost:
    """The expected-cost function of ``supernet`` for ``cfg.metric``; raises when a latency table lacks ops."""
    cost = node_cost(cfg)
    table = supernet.cost_table(cost)
    missing = getattr(cost, "missing", [])
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DartsConfigError("cost.table", f"the latency table has no batch-{cfg.batch_size} entry for "
                               f"{len(missing)} op(s) of the supernet: {shown}",
                               hint="build it for this space with `python -m compiler task=profile_ops` "
                                    "(see search/profiling), or use cost.metric=macs")
    return ExpectedCost(table, [len(r.options) for r in supernet.relaxed], cfg.normalize)
