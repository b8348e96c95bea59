"""DARTS (Liu et al., 2019) as a one-shot strategy: ``+search=darts`` runs the search task with it.

Its search phase (``fit``):
1. the space (re-specialised to the data by the task) is lowered to a supernet (compiler/supernet.py); its size and
   a memory estimate are printed, and a configured memory limit is enforced before any training;
2. weights and architecture logits are trained in alternation (bilevel.py), checkpointed every epoch in
   darts_state.pt (the run resumes from it; the loop's checkpoint.json names it and its epoch);
3. each decision takes the option the trained supernet needs most (perturbation.py; or its strongest, derive.py,
   with ``search.derive.method=argmax``); a collapse toward parameter-free ops is warned about;
   supernet.py, alphas.json and alphas.png are written.
The derived architecture is then the one candidate of the loop: evaluated by the configured evaluator and recorded
(history.jsonl) with the supernet's figures, and, as the best, trained from scratch by the evaluator's final training
with ``search.retrain`` on top (best/), at ``search.derived_params``' size. ``search.train_derived=false`` records it
unevaluated and writes best/ untrained.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from functools import partial
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn
from omegaconf import OmegaConf

from compiler.errors import ArchError, Span
from compiler.space import Space
from compiler.supernet import Supernet, SupernetError, build_supernet
from search.darts.bilevel import BilevelSearch, Tuner
from search.darts.config import DartsConfig, darts_config, uses_edge_norm
from search.darts.cost import build_penalty
from search.darts.derive import collapse, collapse_warning, derive, edge_strengths, keep_strongest
from search.darts.memory import MemoryEstimate, check_memory, estimate
from search.darts.relaxation import RELAXATION_CLASSES
from search.darts.perturbation import Score, Step, accuracy_score, decision_order, naswot_score, select, steps_json
from search.darts.report import report_notes, write_alpha_history
from search.data import DataSplits
from search.evaluators.base import Evaluator
from search.evaluators.train import TrainEvaluator
from search.strategies.one_shot import OneShotStrategy, SearchStopped
from search.training import resolve_device, trainer_config
from search.training.checks import trainer_with_overrides

CHECKPOINT_FILE = "darts_state.pt"


def _identity(space: Space, fixed: Mapping[int, int], settings: DartsConfig, seed: int) -> dict[str, Any]:
    """What a checkpoint must match to be continued (not: display, device, threads, the memory check, how the
    trained supernet is derived, and what happens to the derived network)."""
    config = {k: v for k, v in dataclasses.asdict(settings).items()
              if k not in ("progress", "memory_limit_mb", "device", "cpu_threads", "retrain", "train_derived",
                           "derived_params", "strategy", "derive", "max_seconds")}
    return {"space": space.name, "decisions": [[d.name, list(d.options)] for d in space.decisions],
            "fixed": {space.decisions[p].name: o for p, o in sorted(fixed.items())}, "seed": seed,
            "config": json.loads(json.dumps(config))}


def _epoch_line(record: Mapping[str, Any], epochs: int, metric: str) -> str:
    parts = [f"epoch {record['epoch']}/{epochs}", f"weights: loss {record['train_loss']:.3f} "
             f"acc {100 * record['train_acc']:.1f} %"]
    if record.get("arch_loss") is not None:
        parts.append(f"arch: loss {record['arch_loss']:.3f} acc {100 * record['arch_acc']:.1f} %")
    parts.append(f"supernet val acc {100 * record['val_acc']:.1f} %")
    if "expected_cost" in record:
        parts.append(f"E[{metric}] {record['expected_cost']:,.4g}")
    return " | ".join(parts) + f" ({record['seconds']:.1f} s)"


def variant(settings: DartsConfig) -> str:
    """The method in a few words, for the log and the report."""
    parts = [RELAXATION_CLASSES[settings.relaxation].label]
    derivation = settings.derive
    if derivation.method == "perturbation":
        how = f"{derivation.order} order" if derivation.discretize == "progressive" else "each in the trained supernet"
        steps = derivation.finetune_steps
        tuned = f", {steps} fine-tuning steps between decisions" if steps else ""
        paper = ("Zero-Cost-PT" if derivation.score == "naswot"
                 else "DARTS-PT" + ("" if steps else " without fine-tuning"))
        parts.append(f"derived by perturbation ({derivation.score}, {how}{tuned}: {paper})")
    if settings.beta_decay.weight:
        parts.append(f"beta-decay {settings.beta_decay.weight:g}")
    if settings.partial_channels > 1:
        parts.append(f"1/{settings.partial_channels} of the channels per edge (PC-DARTS)")
    if uses_edge_norm(settings):
        parts.append("edge normalisation")
    return ", ".join(parts)


class Darts(OneShotStrategy):
    """Bilevel search over the space's supernet; one candidate, the derived architecture."""

    settings: DartsConfig

    def __init__(self, space: Space, seed: int = 0, objectives: Any = None,
                 settings: DartsConfig | None = None) -> None:
        super().__init__(space, seed, objectives, settings or DartsConfig())
        if len(self.objectives.objectives) > 1:
            raise ArchError(f"DARTS descends one loss and cannot search several objectives "
                            f"({', '.join(self.objectives.names)})", Span("objective", 0, 0),
                            hint="use objective=accuracy and trade accuracy for cost with search.cost.weight (macs, "
                                 "params or latency), or search several objectives with +search=nsga2 (or "
                                 "evolution, local, rl, optuna_tpe, random)")
        self.seed = seed
        self.supernet: Supernet | None = None
        self.memory: MemoryEstimate | None = None
        self.history: list[dict[str, Any]] = []       # one record per supernet epoch (bilevel.py)
        self.choices: tuple[int, ...] = ()             # the derived option of each relaxed decision
        self.warnings: list[str] = []
        self.parameter_free_share = 0.0
        self.selection: dict[str, Any] | None = None  # how perturbation derived it (search.derive.method)

    @classmethod
    def configure(cls, node: Any) -> DartsConfig:
        return darts_config(node)

    @property
    def evaluates(self) -> bool:
        return self.settings.train_derived

    @property
    def candidate_params(self) -> Mapping[str, Any]:
        return self.settings.derived_params

    def adopt(self, evaluator: Evaluator) -> None:
        """The evaluator must train (it holds the data, and trains the derived network); DARTS' retraining settings
        go on top of its final ones (checked before any work)."""
        if evaluator.data is None:
            raise ArchError("DARTS trains a supernet on the data set and the derived network from scratch, which "
                            f"needs a training evaluator, not {type(evaluator).__name__}", Span("evaluator", 0, 0),
                            hint="use evaluator=train (the default) with dataset=NAME")
        retrain = self.settings.retrain
        if not retrain:
            return
        if not isinstance(evaluator, TrainEvaluator):
            raise ArchError(f"search.retrain sets the trainer of evaluator=train, not of {type(evaluator).__name__}",
                            Span("search.retrain", 0, 0), hint="use evaluator=train, or search.retrain={}")
        trainer_with_overrides(evaluator.trainer, retrain, "search.retrain")
        merged = OmegaConf.merge(OmegaConf.create(dict(evaluator.final_overrides)), retrain)
        evaluator.final_overrides = OmegaConf.to_container(merged, resolve=True)  # type: ignore[assignment]
        trainer_config(OmegaConf.merge(OmegaConf.create(dict(evaluator.trainer)), evaluator.final_overrides))

    # ---- the search phase ------------------------------------------------------------------------------------
    def fit(self, data: DataSplits | None, out_dir: Path) -> None:
        settings, space = self.settings, self.space
        assert data is not None, "adopt() checks that the evaluator holds the data"
        try:
            supernet = build_supernet(space, settings.fixed, settings.unrelaxed, settings.partial_channels,
                                      uses_edge_norm(settings), settings.option_affine)
        except SupernetError as err:
            if err.span is not None:   # located in the .arch file (options that cannot be mixed)
                raise
            # the rest are about the decisions: unknown or bad entries of search.fixed, or ones it must fix
            raise SupernetError(err.message, Span("search.fixed", 0, 0), hint=err.hint) from err
        if not supernet.relaxed:
            raise ArchError(f"the space '{space.name}' has no layer or input decision left to relax",
                            space.module.span,
                            hint="remove decisions from search.fixed, or search this space with +search=evolution")
        for warning in supernet.warnings:
            print(warning)
        one_path = RELAXATION_CLASSES[settings.relaxation].one_path
        memory = estimate(supernet, settings.batch_size, settings.order, one_path=one_path)
        print(f"supernet: {memory.line()}")
        check_memory(memory, settings.memory_limit_mb, resolve_device(settings.device))
        penalty = build_penalty(supernet, settings.cost)
        self.supernet, self.memory = supernet, memory

        (out_dir / "supernet.py").write_text(supernet.source)
        print(f"searching {space.name} with DARTS: {len(supernet.relaxed)} relaxed decisions "
              f"({sum(r.sites for r in supernet.relaxed)} mixed choices), {len(supernet.fixed)} fixed; "
              f"{settings.epochs} epochs, order {settings.order}, {variant(settings)}, {data.describe()}; "
              f"writing to {out_dir}")
        search = BilevelSearch(supernet, data, settings, self.seed, penalty, out_dir / CHECKPOINT_FILE,
                               _identity(space, supernet.fixed, settings, self.seed))
        self.history = self._train(search)
        self._derive(supernet, search)
        write_alpha_history(supernet, self.history, out_dir, self.selection)

    def _train(self, search: BilevelSearch) -> list[dict[str, Any]]:
        settings = self.settings
        try:
            return search.run(on_epoch=lambda r: print(_epoch_line(r, settings.epochs, settings.cost.metric))
                              if settings.progress else None)
        except FloatingPointError as err:
            raise SearchStopped(f"the supernet's training diverged: {err}", 3) from err
        except torch.OutOfMemoryError as err:
            assert self.memory is not None
            raise SearchStopped(f"out of memory while training the supernet (estimated {self.memory.total_mb:,.0f} "
                                f"MiB at batch {self.memory.batch_size}; {str(err).splitlines()[0][:120]}): lower "
                                "search.batch_size, shrink the space (space.params) or fix decisions with "
                                "search.fixed", 4) from err

    def _derive(self, supernet: Supernet, search: BilevelSearch) -> None:
        """The derived architecture: the last epoch's strongest options (argmax) or the options the trained
        supernet needs most (perturbation); warn about a collapse."""
        derivation = self.settings.derive
        last = self.history[-1]
        if derivation.method == "perturbation":
            start = time.perf_counter()
            op_choices, steps = self._perturbation(supernet, search)
            self.selection = {"method": "perturbation", "score": derivation.score, "order": derivation.order,
                              "discretize": derivation.discretize, "finetune_steps": derivation.finetune_steps,
                              "seconds": round(time.perf_counter() - start, 3),
                              "steps": steps_json(supernet.relaxed, steps)}
            how = f"progressive, {derivation.order} order" if derivation.discretize == "progressive" else "once"
            if derivation.finetune_steps:
                how += f", {derivation.finetune_steps} fine-tuning steps after each decision"
            print(f"derivation by perturbation ({derivation.score}, {how}): {self.selection['seconds']:.1f} s")
        else:
            op_choices = derive(supernet.relaxed, last["softmax"], derivation.exclude_zero)
        choices = op_choices
        if derivation.top_inputs is not None:
            strengths = edge_strengths(supernet.relaxed, last["softmax"], supernet.edge_groups, last.get("edges"))
            choices = keep_strongest(supernet.relaxed, strengths, op_choices, supernet.edge_groups,
                                     derivation.top_inputs)
        genotype = supernet.genotype(choices)
        # collapse is about the ops the edges chose, not about edges dropped by top_inputs (they derive `zero`)
        check = collapse(supernet.relaxed, last["softmax"], op_choices, derivation.collapse_threshold)
        self.warnings = [collapse_warning(supernet.relaxed, op_choices, check)] if check.collapsed else []
        if len(self.history) < self.settings.epochs:   # only search.max_seconds ends the training early
            done, warmup = len(self.history), self.settings.warmup_epochs
            self.warnings.insert(0, f"the supernet trained {done} of {self.settings.epochs} epochs: "
                                    f"search.max_seconds={self.settings.max_seconds:g} stopped it (one more epoch "
                                    f"would have passed it after {sum(r['seconds'] for r in self.history):.1f} s), "
                                    "so its schedules (learning rate, temperature, beta-decay weight) had not run "
                                    "to their ends"
                                    + (f"; the architecture never trained (search.warmup_epochs={warmup}): the "
                                       "derivation reads untrained weights" if done <= warmup else "")
                                    + "; lower search.epochs to fit the limit")
        for warning in self.warnings:
            print(warning)
        print("derived: " + ", ".join(f"{k}={v}" for k, v in self.space.describe(genotype).items()))
        self.choices, self.parameter_free_share = tuple(choices), check.share
        self.candidates = [genotype]

    def _perturbation(self, supernet: Supernet, search: BilevelSearch) -> tuple[tuple[int, ...], list[Step]]:
        derivation = self.settings.derive
        with torch.no_grad():
            base = search.relaxation.expected(search.op_logits)
        scorer: Callable[[nn.Module], Score]
        if derivation.score == "naswot":
            inputs = search.val_inputs(derivation.batch_size)
            if inputs is None:
                raise SearchStopped("search.derive.score=naswot scores a minibatch of the validation split, which "
                                    "is empty here: give the data set a validation split", 2)
            scorer = partial(naswot_score, inputs=inputs)
        else:
            if not len(search.val_loader.labels):
                raise SearchStopped("search.derive.score=val_acc needs a validation split, which is empty here", 2)
            scorer = partial(accuracy_score, batches=list(search.val_loader))
        order = decision_order(len(supernet.relaxed), derivation.order, search.seed)
        progressive = derivation.discretize == "progressive"
        with search.threads():
            retune = None
            if derivation.finetune_steps:
                tuner = Tuner(search, derivation.finetune_lr)

                def retune(weights: list[torch.Tensor]) -> Score:
                    return scorer(tuner.tune(weights, derivation.finetune_steps))
            try:
                return select(supernet.relaxed, base, scorer(search.model), order, derivation.exclude_zero,
                              progressive, retune)
            except FloatingPointError as err:
                raise SearchStopped(str(err), 3) from err

    def phase_state(self) -> dict[str, Any]:
        return {"checkpoint": CHECKPOINT_FILE, "epochs_done": len(self.history)}

    # ---- what the phase adds to the record and the report ------------------------------------------------------
    @property
    def search_seconds(self) -> float:
        """Supernet training and, for perturbation, the derivation."""
        return sum(h["seconds"] for h in self.history) + (self.selection or {}).get("seconds", 0.0)

    def candidate_metrics(self, genotype: Sequence[int]) -> dict[str, Any]:
        if tuple(genotype) not in self.candidates:
            return {}
        val_acc = self.history[-1]["val_acc"]
        return {"supernet_val_acc": val_acc if math.isfinite(val_acc) else None,
                "parameter_free_share": self.parameter_free_share, "search_seconds": round(self.search_seconds, 3)}

    def report_notes(self) -> list[str]:
        if self.supernet is None or self.memory is None:
            return []
        return report_notes(self.supernet, self.history, self.choices, self.memory.line(), self.warnings,
                            self.search_seconds, self.settings.cost.metric, variant(self.settings))
