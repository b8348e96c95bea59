"""Stopping bad candidates early: the median stopping rule of Google Vizier (Golovin et al., KDD 2017).

A candidate in training is stopped after epoch ``e`` when its best validation accuracy so far is below the median,
over the earlier candidates that reached epoch ``e``, of their running average accuracy up to ``e``. Averages
(not bests) make the rule lenient: only a candidate clearly behind the typical one is stopped. A grace period
(``min_epochs``) and a minimum number of earlier curves (``min_candidates``) keep it from judging on too little.

The rule is deterministic given the earlier curves, which are journalled with each candidate (``val_curve``), so a
resumed search replays them and stops exactly the candidates an uninterrupted run stops.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Sequence


@dataclass
class MedianStopping:
    min_epochs: int = 2          # never stop a candidate before it has trained this many epochs
    min_candidates: int = 4      # judge at epoch e only against at least this many earlier curves reaching e
    averages: list[list[float]] = field(default_factory=list)  # earlier candidates' running averages per epoch

    def __post_init__(self) -> None:
        if self.min_epochs < 1 or self.min_candidates < 1:
            raise ValueError(f"early stopping needs min_epochs >= 1 and min_candidates >= 1, got "
                             f"{self.min_epochs} and {self.min_candidates}")

    def should_stop(self, curve: Sequence[float]) -> bool:
        """``curve``: the validation accuracy after each epoch so far (epoch 1 first)."""
        epoch = len(curve)
        if epoch < self.min_epochs:
            return False
        peers = [average[epoch - 1] for average in self.averages if len(average) >= epoch]
        return len(peers) >= self.min_candidates and max(curve) < statistics.median(peers)

    def observe(self, curve: Sequence[float]) -> None:
        """A finished (or stopped) candidate's curve joins the reference."""
        total, average = 0.0, []
        for epoch, value in enumerate(curve, start=1):
            total += value
            average.append(total / epoch)
        if average:
            self.averages.append(average)
