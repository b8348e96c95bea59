"""Optuna's TPE sampler behind the ask/tell interface (single objective; constraints through Optuna's
``constraints_func``; failed candidates are told as FAIL, which TPE ignores).

Resume: the state is the list of results in the order they were told. ``load_state_dict`` rebuilds an in-memory
study from it, and every ask draws a fresh sampler seed from the strategy's numpy Generator, so the proposals after
a resume are those of an uninterrupted run (results asked but not yet told when the state was saved are dropped).
"""
from __future__ import annotations

import warnings
from typing import Any, Mapping

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from search.objectives import FAILED, Fitness
from search.space import Genotype
from search.strategies.base import Strategy

VIOLATION = "violation"


def _violation(trial: FrozenTrial) -> tuple[float]:
    return (float(trial.user_attrs.get(VIOLATION, 0.0)),)


class OptunaTPE(Strategy):
    def __init__(self, space: Any, seed: int = 0, objectives: Any = None, n_startup_trials: int = 10,
                 multivariate: bool = True) -> None:
        super().__init__(space, seed, objectives)
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial would drown the progress bar
        self.n_startup_trials = n_startup_trials
        self.multivariate = multivariate
        self.names = [f"{i}:{d.name}" for i, d in enumerate(space.decisions)]
        self.distributions = {name: CategoricalDistribution(list(range(len(d.options))))
                              for name, d in zip(self.names, space.decisions)}
        self.told: list[list] = []                  # [genotype, value, violation] in telling order
        self.pending: dict[Genotype, list[optuna.trial.Trial]] = {}
        self.study = optuna.create_study(direction="maximize")  # its sampler is replaced at every ask

    def _sampler(self) -> optuna.samplers.TPESampler:
        with warnings.catch_warnings():  # multivariate / constraints_func are flagged experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(
                seed=int(self.rng.integers(2**31)), n_startup_trials=self.n_startup_trials,
                multivariate=self.multivariate,
                constraints_func=_violation if self.objectives.constraints else None)

    def _propose(self) -> Genotype:
        self.study.sampler = self._sampler()
        trial = self.study.ask(self.distributions)
        genotype = tuple(int(trial.params[name]) for name in self.names)
        self.pending.setdefault(genotype, []).append(trial)
        return genotype

    def _observe(self, genotype: Genotype, fitness: Fitness, metrics: Mapping[str, Any]) -> None:
        violation = self.objectives.violation(metrics) if fitness.tier != FAILED else 0.0
        value = self.objectives.primary.signed(metrics[self.objectives.primary.name]) \
            if fitness.tier != FAILED else None
        self.told.append([list(genotype), value, violation])
        waiting = self.pending.get(genotype)
        if waiting:
            trial = waiting.pop(0)
            trial.set_user_attr(VIOLATION, violation)
            if value is None:
                self.study.tell(trial, state=TrialState.FAIL)
            else:
                self.study.tell(trial, value)
        else:  # a result the sampler did not ask for (e.g. injected by the budget wrapper)
            self.study.add_trial(self._frozen(genotype, value, violation))

    def _frozen(self, genotype: Genotype, value: float | None, violation: float) -> FrozenTrial:
        params = {name: int(v) for name, v in zip(self.names, genotype)}
        return create_trial(params=params, distributions=self.distributions, value=value,
                            state=TrialState.FAIL if value is None else TrialState.COMPLETE,
                            user_attrs={VIOLATION: violation})

    def _state(self) -> dict[str, Any]:
        return {"told": self.told}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        self.told = [list(t) for t in state["told"]]
        self.pending = {}
        self.study = optuna.create_study(direction="maximize")
        for genotype, value, violation in self.told:
            self.study.add_trial(self._frozen(tuple(genotype), value, violation))

