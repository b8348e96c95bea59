"""Perturbation-based derivation (``search.derive.method=perturbation``): choose each decision's option by how
much the trained supernet needs it, not by the size of its architecture weight.

Wang et al. (ICLR 2021, "Rethinking Architecture Selection in Differentiable NAS", DARTS-PT) show that the
magnitude of an architecture weight says little about an option's strength: skip connections get the largest
weights because they help the supernet train, not because the derived network needs them, and that is where
DARTS' collapse comes from. Their selection removes each option of one decision from the supernet in turn, keeps
the option whose removal hurts most, fixes the decision to it, and goes on to the next decision. Xiang et al.
(AAAI 2023, "Zero-Cost Operation Scoring in Differentiable Architecture Search", Zero-Cost-PT) score the
supernet with a zero-cost proxy instead of its validation accuracy, which costs one minibatch per trial.

Scores (``search.derive.score``), higher = the supernet is better with these mixing weights:
* ``val_acc``: the supernet's accuracy on the validation split (DARTS-PT; with batch statistics, see
  ``accuracy_score``);
* ``naswot``: the activation-pattern kernel of ``search/proxies/naswot.py`` on one minibatch drawn at random (with
  the run's seed) from the validation split (Zero-Cost-PT's criterion), in train mode on a copy of the supernet, so
  its running statistics stay.
A removed option's weight is set to 0 without renormalising the rest (as both papers mask it). Every decision is
scored in the supernet as trained (``discretize=once``, the default: what a decision sees does not depend on the
others' outcome, and the order does not matter), or a decided decision becomes one-hot for the next
(``discretize=progressive``, the papers' procedure). Without more, the progressive supernet drifts away from what
it was trained as with each one-hot decision (on NAS-Bench-201 at the CPU setting its validation accuracy falls from
~47 % to ~19 %); DARTS-PT fine-tunes the supernet for a few epochs after each decision to keep it trained for the
decisions so far, which ``search.derive.finetune_steps`` does (weight steps of a copy, bilevel.py's ``Tuner``).
``once`` is the default (BENCHMARKS.md, "Derivation by perturbation, corrected": 93.645 against 93.494 mean over 12
supernets, lowest 93.223 against 92.923; "Fine-tuning between decisions": over 18 supernets once 93.668, progressive
with 100 steps after each decision 93.483, lowest 92.28).
With ``search.derive.top_inputs`` (DARTS' cells) the options are chosen this way and the edges each node keeps are
still ranked by their architecture weights (derive.py's ``keep_strongest``). The decisions are taken in a random
order drawn from the run's seed (``order=random``, the papers' default) or in the space's order (``order=fixed``)
when progressive.
Everything is deterministic for a seed, so a resumed run derives the same.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from compiler.supernet import RelaxedDecision
from search.proxies.naswot import ActivationKernel, kernel_logdet

Score = Callable[[list[torch.Tensor]], float]   # mixing weights per decision -> the supernet's score
Retune = Callable[[list[torch.Tensor]], Score]  # mixing weights so far -> the score of the supernet tuned with them


@dataclass(frozen=True)
class Step:
    """One decision's selection: the score of the supernet without each candidate option, and the option kept."""

    decision: int                  # index among the relaxed decisions
    without: dict[int, float]      # option -> score with that option removed
    chosen: int


def decision_order(count: int, order: str, seed: int) -> list[int]:
    """The order in which decisions are fixed."""
    if order == "fixed":
        return list(range(count))
    return [int(i) for i in np.random.default_rng(seed).permutation(count)]


def select(relaxed: Sequence[RelaxedDecision], base: Sequence[torch.Tensor], score: Score, order: Sequence[int],
           exclude_zero: bool = True, progressive: bool = True, retune: Retune | None = None
           ) -> tuple[tuple[int, ...], list[Step]]:
    """Each decision's option by perturbation (module docstring), starting from the mixing weights ``base``.

    The option kept is the one whose removal scores lowest (ties: the first); a NaN score counts as the
    removal hurting least. ``zero`` options are never kept with ``exclude_zero`` but stay in the mixture of the
    decisions not yet fixed, as in the trained supernet. ``progressive`` fixes each decided decision one-hot for
    the trials of the next ones (the papers' procedure); without it every trial perturbs the trained supernet as it
    is (one removal at a time), so no decision is taken in a supernet that earlier ones have moved away from the
    mixture it was trained with, and the order does not matter. ``retune`` (progressive only) is called after each
    decision but the last with the mixing weights so far and gives the score the next decisions use: DARTS-PT's
    fine-tuning of the supernet between decisions (bilevel.py's ``Tuner``)."""
    if retune is not None and not progressive:
        raise ValueError("retune fine-tunes between progressive decisions")
    weights = [w.detach().clone() for w in base]
    choices = [0] * len(relaxed)
    steps = []
    for d in order:
        allowed = [k for k in range(len(weights[d])) if not (exclude_zero and relaxed[d].zero[k])]
        allowed = allowed or list(range(len(weights[d])))
        without: dict[int, float] = {}
        if len(allowed) > 1:
            for k in allowed:
                trial = list(weights)
                trial[d] = weights[d].clone()
                trial[d][k] = 0.0
                without[k] = score(trial)
        chosen = min(allowed, key=lambda k: (_ordered(without.get(k, 0.0)), k))
        if progressive:
            weights[d] = torch.zeros_like(weights[d])
            weights[d][chosen] = 1.0
        choices[d] = chosen
        steps.append(Step(d, without, chosen))
        if retune is not None and len(steps) < len(order):
            score = retune(weights)
    return tuple(choices), steps


def _ordered(value: float) -> float:
    return math.inf if math.isnan(value) else value


def accuracy_score(model: nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> Score:
    """The supernet's accuracy over ``batches`` (the validation split), with each batch's own batch-norm statistics
    (train mode, on a copy): the running statistics were collected under the trained mixture, and a decision made
    one-hot, or an option removed, shifts the statistics its successors see; with batch statistics a trial is not
    judged by stale ones (the validation batches hold 1,000 images, plenty for the estimate)."""
    scratch = copy.deepcopy(model).train()
    total = sum(len(y) for _, y in batches)

    @torch.no_grad()
    def score(weights: list[torch.Tensor]) -> float:
        correct = sum(int((scratch(x, weights=weights).argmax(1) == y).sum()) for x, y in batches)
        return correct / total if total else math.nan

    return score


def naswot_score(model: nn.Module, inputs: torch.Tensor) -> Score:
    """NASWOT's log|det K| of the supernet on ``inputs``, in train mode on a copy (the model's running statistics
    are not touched)."""
    scratch = copy.deepcopy(model).train()

    @torch.no_grad()
    def score(weights: list[torch.Tensor]) -> float:
        recorder = ActivationKernel(inputs.shape[0], inputs.device)
        with recorder:
            scratch(inputs, weights=weights)
        return kernel_logdet(recorder.kernel)

    return score


def steps_json(relaxed: Sequence[RelaxedDecision], steps: Sequence[Step]) -> list[dict[str, object]]:
    """The selection in the order it happened, by decision and option name (alphas.json, report)."""
    return [{"decision": relaxed[s.decision].name, "chosen": relaxed[s.decision].options[s.chosen],
             "without": {relaxed[s.decision].options[k]: (None if math.isnan(v) or math.isinf(v) else v)
                         for k, v in s.without.items()}} for s in steps]
