"""Ranks and rank correlations (scipy's, which scikit-learn already requires), with -inf allowed as "worst".

``mid_rank_position`` places one value in a reference pool: (number of pool values below it + half the number
equal to it) / pool size. For a value that is itself in the pool this is (average rank - 1/2) / n, so scoring
candidates one at a time against a pool orders them exactly as ranking the pool does.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats


def _values(values: Sequence[float] | np.ndarray, what: str = "scores") -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {array.shape}")
    if np.isnan(array).any():
        raise ValueError(f"{what} contain NaN; a proxy reports a degenerate network as -inf")
    return array


def average_ranks(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """1-based ranks, smallest first, ties sharing their average rank (-inf ranks below everything)."""
    return stats.rankdata(_values(values), method="average")


def mid_rank_position(value: float, pool: Sequence[float] | np.ndarray) -> float:
    """Where ``value`` stands in ``pool``, in [0, 1]: (below + equal / 2) / len(pool)."""
    pool = np.sort(_values(pool, "the pool"))
    if pool.size == 0:
        raise ValueError("the reference pool is empty")
    if np.isnan(value):
        raise ValueError("the score is NaN; a proxy reports a degenerate network as -inf")
    below = np.searchsorted(pool, value, side="left")
    equal = np.searchsorted(pool, value, side="right") - below
    return float((below + equal / 2) / pool.size)


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman's rank correlation (Pearson's on average ranks)."""
    return float(stats.spearmanr(average_ranks(x), average_ranks(y)).statistic)


def kendall(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Kendall's tau-b (ties in either variable accounted for)."""
    return float(stats.kendalltau(average_ranks(x), average_ranks(y), variant="b").statistic)
