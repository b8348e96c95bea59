"""Optuna's TPE sampler behind the ask/tell interface (constraints as each trial's own constraint value; failed
candidates, and those skipped before training for breaking a constraint, are told as FAIL, which TPE ignores).
Several ranked objectives make a multi-objective study (every objective signed and maximised: MOTPE); with
``scalarize: weighted`` the study maximises the weighted sum.

Resume: the state is the study's trials in trial-number order (the order of the asks; a result the sampler did not
ask for takes the next number when it is told), each with its result or none yet. ``load_state_dict`` rebuilds an
in-memory study with the same numbers, the trials still in flight asked again as running trials with their params,
so that their results (evaluated first by the resumed loop) are told to the same trials; TPE weighs trials by
recency, so the numbering matters. Every ask draws a fresh sampler seed from the strategy's numpy Generator, so the
proposals after a resume are those of an uninterrupted run, with several workers too.

Warm start: the seeds (best by proxy first) are enqueued in place of the first ``n_startup_trials`` random trials.
"""
from __future__ import annotations

import warnings
from typing import Any, Mapping

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from search.objectives import Fitness
from compiler.ir.space import Genotype
from search.strategies.base import Strategy

VIOLATION = "violation"   # the trial's constraint: how far it breaks the run's constraints (0: not at all)


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
        self.trials: list[list] = []                # by trial number: [genotype, told?, value(s), violation]
        self.asked = 0                              # proposals made (warm-start seeds replace the start-up ones)
        self.pending: dict[Genotype, list[optuna.trial.Trial]] = {}
        self.study = self._study()  # its sampler is replaced at every ask

    def _study(self) -> optuna.Study:
        return optuna.create_study(directions=["maximize"] * (len(self.objectives.objectives)
                                                              if self.objectives.ranked else 1))

    def _sampler(self) -> optuna.samplers.TPESampler:
        with warnings.catch_warnings():  # multivariate is flagged experimental: one line per ask would drown the output
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # TPE reads each trial's constraint values (set when told, or given to a rebuilt trial) by itself
            return optuna.samplers.TPESampler(seed=int(self.rng.integers(2**31)),
                                              n_startup_trials=self.n_startup_trials, multivariate=self.multivariate)

    def _propose(self) -> Genotype:
        self.study.sampler = self._sampler()
        if self.seeds and self.asked < self.n_startup_trials:   # a warm-start seed instead of a random start-up trial
            self.study.enqueue_trial({name: int(v) for name, v in zip(self.names, self.seeds.pop(0))})
        self.asked += 1
        trial = self.study.ask(self.distributions)
        genotype = tuple(int(trial.params[name]) for name in self.names)
        self.pending.setdefault(genotype, []).append(trial)
        self.trials.append([list(genotype), False, None, 0.0])
        assert trial.number == len(self.trials) - 1
        return genotype

    def _observe(self, genotype: Genotype, fitness: Fitness, metrics: Mapping[str, Any]) -> None:
        evaluated = self.objectives.evaluated(metrics)  # else failed, or skipped before training: no values
        violation = self.objectives.violation(metrics) if evaluated else 0.0
        value: float | list[float] | None = None
        if evaluated:
            ranked = self.objectives.ranked
            value = list(self.objectives.vector(metrics)) if ranked else self.objectives.scalar(metrics)
        waiting = self.pending.get(genotype)
        if waiting:
            trial = waiting.pop(0)
            self.trials[trial.number][1:] = [True, value, violation]
            if self.objectives.constraints:
                trial.set_constraint(VIOLATION, violation)
            if value is None:
                self.study.tell(trial, state=TrialState.FAIL)
            else:
                self.study.tell(trial, value)
        else:  # a result the sampler did not ask for (e.g. injected by the budget wrapper): the next number
            self.trials.append([list(genotype), True, value, violation])
            self.study.add_trial(self._frozen(genotype, value, violation))

    def _frozen(self, genotype: Genotype, value: float | list[float] | None, violation: float) -> FrozenTrial:
        params = {name: int(v) for name, v in zip(self.names, genotype)}
        values = value if isinstance(value, list) else None if value is None else [value]
        return create_trial(params=params, distributions=self.distributions, values=values,
                            state=TrialState.FAIL if value is None else TrialState.COMPLETE,
                            constraints={VIOLATION: violation} if self.objectives.constraints else None)

    def _state(self) -> dict[str, Any]:
        return {"trials": self.trials, "asked": self.asked}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        self.trials = [[list(g), bool(told), value, float(violation)] for g, told, value, violation in state["trials"]]
        self.asked = int(state["asked"])
        self.pending = {}
        self.study = self._study()
        for number, (genotype, told, value, violation) in enumerate(self.trials):
            if told:
                self.study.add_trial(self._frozen(tuple(genotype), value, violation))
            else:   # in flight when the state was saved: running again, under its number, until its result comes
                self.study.enqueue_trial({name: int(v) for name, v in zip(self.names, genotype)})
                trial = self.study.ask(self.distributions)
                assert trial.number == number
                self.pending.setdefault(tuple(genotype), []).append(trial)

