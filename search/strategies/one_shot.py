"""One-shot strategies: candidates derived from weights trained once for the whole space (a supernet).

A one-shot strategy is a ``Strategy`` whose candidates come from one search phase over shared weights, not from
sampling (DARTS: a supernet's weights and architecture logits, trained in alternation). The search task runs that
phase first (``fit``); the candidates it derives then go through the loop of every strategy: asked, evaluated by
the configured evaluator, journalled (history.jsonl, by the loop alone), checkpointed (checkpoint.json), and the
best one exported (best/, the evaluator's final training) and reported. A one-shot run resumes as every run does:
the phase from its own checkpoint in the run directory (tensors, which JSON cannot hold; ``state_dict`` names it and
how far it got, and ``load_state_dict`` refuses a loop checkpoint that the phase's checkpoint does not match), the
loop from the journal and checkpoint.json.

A subclass gives ``configure`` (its settings: the whole ``search`` node, checked), ``fit`` (the phase: resumable,
deterministic for its checkpoint, writing its own files, filling ``candidates``) and ``phase_state``; optionally
``adopt`` (check and adjust the evaluator before any work), ``candidate_metrics`` and ``report_notes``.
"""
from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from compiler.ir.space import Genotype, Space
from search.objectives import Fitness
from search.strategies.base import Strategy

if TYPE_CHECKING:
    from search.data import DataSplits
    from search.evaluators.base import Evaluator


class SearchStopped(Exception):
    """The search phase cannot go on for a reason the user can act on (it diverged, it ran out of memory): one
    message and an exit status, no traceback."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class OneShotStrategy(Strategy):
    """Proposes the candidates its search phase derived, in order, once each (the loop's budget is ``budget``)."""

    checks_options = True   # the phase builds every option of the space (a supernet), so it need not be sampled first

    def __init__(self, space: Space, seed: int = 0, objectives: Any = None, settings: Any = None) -> None:
        super().__init__(space, seed, objectives)
        self.settings = settings
        self.candidates: list[Genotype] = []   # filled by ``fit``
        self.proposed = 0

    @classmethod
    @abstractmethod
    def configure(cls, node: Any) -> Any:
        """Its settings, from the whole ``search`` node, checked (a mistake is a ConfigError naming the key)."""

    @property
    def budget(self) -> int:
        """How many candidates the phase derives: the loop evaluates that many."""
        return 1

    @property
    def evaluates(self) -> bool:
        """Whether its candidates are evaluated (and the best trained); False: they are recorded as derived
        (status ``derived``) and written to best/ untrained."""
        return True

    @property
    def candidate_params(self) -> Mapping[str, Any]:
        """Model parameters of the networks its candidates are evaluated and exported at, over the searched space's
        (DARTS searches a small supernet and trains the derived cell in a larger network); {}: the same."""
        return {}

    def adopt(self, evaluator: Evaluator) -> None:
        """Check (and adjust) the evaluator before any work: e.g. the phase needs its data."""

    @abstractmethod
    def fit(self, data: DataSplits | None, out_dir: Path) -> None:
        """The search phase: train, derive ``candidates``. Resumes from its checkpoint in ``out_dir``; the same
        checkpoint derives the same candidates. May raise ``SearchStopped``."""

    @abstractmethod
    def phase_state(self) -> dict[str, Any]:
        """JSON: where the phase's own checkpoint is and how far it got (part of ``state_dict``)."""

    def _propose(self) -> Genotype:
        if not self.candidates:
            raise RuntimeError(f"{type(self).__name__} proposes candidates only after its search phase (fit)")
        genotype = self.candidates[min(self.proposed, len(self.candidates) - 1)]
        self.proposed += 1
        return genotype

    def _observe(self, genotype: Genotype, fitness: Fitness, metrics: Mapping[str, Any]) -> None:
        pass  # the phase is over: results do not change what it derived

    def _state(self) -> dict[str, Any]:
        return {"candidates": [list(g) for g in self.candidates], "proposed": self.proposed,
                "phase": self.phase_state()}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        phase, candidates = state.get("phase"), [list(g) for g in state.get("candidates", [])]
        if phase != self.phase_state() or candidates != [list(g) for g in self.candidates]:
            raise ValueError(f"the search phase's checkpoint ({self.phase_state()}, deriving "
                             f"{[list(g) for g in self.candidates]}) is not the one this search state was written "
                             f"with ({phase}, deriving {candidates})")
        self.proposed = int(state["proposed"])
