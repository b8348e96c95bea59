"""A rank ensemble of proxies: each member's score becomes a rank position, the positions are averaged.

Proxy scores live on unrelated scales (log-determinants, sums of saliencies over millions of weights, parameter
counts), so they are combined by rank, which needs a set to rank in:

* over a scored set (a benchmark sample, a warm-up pool): a network's ensemble score is the weighted mean over the
  members of (its average rank - 1/2) / n, ties sharing their average rank (``rank_scores``);
* one candidate at a time (a search scoring candidates as they come): the weighted mean over the members of the
  candidate's mid-rank position in a *reference pool* of scored networks, (below + equal / 2) / pool size
  (``score``). For a candidate that is in the pool this equals its ``rank_scores`` value, so both orderings agree.
  The pool should be a random sample of the space (e.g. the warm-up pool); a fixed pool makes the ensemble score
  of a candidate a fixed number, comparable across calls and resumable.

Higher is better for every member (each proxy returns -inf for a network it cannot score, which ranks last).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from search.proxies.ranking import average_ranks, mid_rank_position
from search.proxies.registry import check_names


@dataclass(frozen=True)
class RankEnsemble:
    weights: Mapping[str, float]   # member proxy -> weight (> 0); normalised to sum to 1

    def __post_init__(self) -> None:
        if not self.weights:
            raise ValueError("a rank ensemble needs at least one member")
        check_names(list(self.weights))
        bad = {k: v for k, v in self.weights.items() if not (float(v) > 0 and np.isfinite(float(v)))}
        if bad:
            raise ValueError(f"ensemble weights must be positive and finite, got {bad}")

    @classmethod
    def equal(cls, members: Sequence[str]) -> "RankEnsemble":
        return cls({m: 1.0 for m in members})

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(self.weights)

    def _normalised(self) -> dict[str, float]:
        total = sum(float(w) for w in self.weights.values())
        return {m: float(w) / total for m, w in self.weights.items()}

    def _member_scores(self, scores: Mapping[str, Sequence[float]], what: str) -> dict[str, np.ndarray]:
        missing = [m for m in self.members if m not in scores]
        if missing:
            raise ValueError(f"{what} lacks the ensemble member(s) {', '.join(missing)}")
        columns = {m: np.asarray(scores[m], dtype=np.float64) for m in self.members}
        lengths = {len(c) for c in columns.values()}
        if len(lengths) != 1:
            raise ValueError(f"{what}: the members have different numbers of scores {sorted(lengths)}")
        return columns

    def rank_scores(self, scores: Mapping[str, Sequence[float]]) -> np.ndarray:
        """Ensemble score of every network of a scored set (``scores``: proxy -> one score per network)."""
        columns = self._member_scores(scores, "the scored set")
        n = len(next(iter(columns.values())))
        total = np.zeros(n)
        for member, weight in self._normalised().items():
            total += weight * (average_ranks(columns[member]) - 0.5) / n
        return total

    def score(self, candidate: Mapping[str, float], pool: Mapping[str, Sequence[float]]) -> float:
        """Ensemble score of one candidate against a reference pool (proxy -> the pool's scores)."""
        columns = self._member_scores(pool, "the reference pool")
        missing = [m for m in self.members if m not in candidate]
        if missing:
            raise ValueError(f"the candidate lacks the ensemble member(s) {', '.join(missing)}")
        return float(sum(weight * mid_rank_position(float(candidate[member]), columns[member])
                         for member, weight in self._normalised().items()))


# The shipped ensemble: an equal-weight rank mean of three proxies that are each strong alone and measure different
# things: how differently the ReLUs switch (naswot), how decorrelated the input gradients are (jacob_cov) and size
# (params). Chosen on a development sample of 300 NAS-Bench-201 cells (sample seed 1, batch 32): 0.881 Spearman,
# against 0.785-0.794 for the "size-like" trio synflow+naswot+zico; checked on another sample (BENCHMARKS.md).
# naswot comes free with jacob_cov's forward pass and params from the compiler, so it costs one forward and one
# backward pass.
DEFAULT_ENSEMBLE = RankEnsemble.equal(("naswot", "jacob_cov", "params"))
