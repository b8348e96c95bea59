"""Score candidates by training them: briefly on the training split, scored on the validation split.

The data set is loaded once per process and shared by every candidate. Each candidate's training is seeded from
the run seed and its genotype, so an evaluation is reproducible and a resumed run equals an uninterrupted one (on
the CPU; CUDA kernels may add nondeterminism unless ``trainer.deterministic``).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from compiler.config_values import ConfigError, check_arguments, check_seed
from search.data import DataSplits, check_dataset_config, load_dataset
from search.early_stopping import MedianStopping
from search.evaluators.base import EvaluatorBase
from search.journal import atomic_write_text
from search.schema import refusals_named
from search.training import distributed, processes, seed_everything, train, trainer_config
from search.training.checks import trainer_with_overrides
from search.training.trainer import resolve_device


def _plain(config: Any, key: str) -> dict[str, Any]:
    if isinstance(config, DictConfig):
        return dict(OmegaConf.to_container(config, resolve=True))  # type: ignore[arg-type]
    if config is not None and not isinstance(config, Mapping):
        raise ConfigError(key, f"expected a mapping of options, not {config!r}")
    return dict(config or {})


def _merge(*configs: Mapping[str, Any]) -> dict[str, Any]:
    merged = OmegaConf.merge(*[OmegaConf.create(dict(c)) for c in configs])
    return dict(OmegaConf.to_container(merged, resolve=True))  # type: ignore[arg-type]


def candidate_seed(seed: int, genotype: Sequence[int]) -> int:
    digest = hashlib.sha256(json.dumps([seed, list(genotype)]).encode()).digest()
    return int.from_bytes(digest[:4], "little")


class TrainEvaluator(EvaluatorBase):
    """``(genotype, space) -> {accuracy, val_acc, val_curve, train_time_s, ...}``; accuracy is the validation
    accuracy (a fraction) after ``search_overrides`` training; ``final`` trains the chosen one for ``best/``.

    With ``early_stopping`` (MedianStopping's options), a candidate whose validation accuracy falls clearly behind
    the earlier candidates' is stopped (its metrics say ``stopped_epoch``; its accuracy is where it stopped)."""

    # the trainer's numeric results (search/training/trainer.py: base_metrics, final_metrics) and ``accuracy``
    metric_names = ("accuracy", "val_acc", "best_val_acc", "best_epoch", "stopped_epoch", "train_loss", "train_acc",
                    "steps", "epochs", "train_time_s", "eval_time_s", "images_per_s", "batch_size", "cpu_threads")

    def __init__(self, dataset: Mapping[str, Any], trainer: Mapping[str, Any] | None = None,
                 search_overrides: Mapping[str, Any] | None = None,
                 final_overrides: Mapping[str, Any] | None = None, seed: int = 0,
                 early_stopping: Mapping[str, Any] | None = None) -> None:
        self.dataset_config = _plain(dataset, "evaluator.dataset")
        check_dataset_config(self.dataset_config)
        self.trainer = _plain(trainer, "evaluator.trainer")
        self.search_overrides = _plain(search_overrides, "evaluator.search_overrides")
        self.final_overrides = _plain(final_overrides, "evaluator.final_overrides")
        self.seed = check_seed(seed, "evaluator.seed")
        self._data: DataSplits | None = None
        # every trainer option is checked now, not when the final training starts after the search
        config = trainer_with_overrides(self.trainer, self.search_overrides, "evaluator.search_overrides")
        self.device = config.device
        trainer_with_overrides(self.trainer, self.final_overrides, "evaluator.final_overrides")
        stopping = _plain(early_stopping, "evaluator.early_stopping")
        check_arguments(MedianStopping, stopping, "evaluator.early_stopping")
        with refusals_named("evaluator.early_stopping"):
            self.stopper = MedianStopping(**stopping) if stopping else None
        if self.stopper is not None and config.eval_every != 1:
            raise ValueError("early stopping judges every epoch: it needs the search trainer's eval_every = 1, "
                             f"got {config.eval_every}")

    @property
    def observes_results(self) -> bool:
        return self.stopper is not None  # the median rule learns from the earlier candidates

    @property
    def data(self) -> DataSplits:
        if self._data is None:
            data = load_dataset(self.dataset_config)
            # on CUDA the decoded images move to the device once and stay there for every candidate
            device = resolve_device(self.device)
            self._data = data.to(device) if device.type == "cuda" else data
        return self._data

    def _train(self, genotype: Sequence[int], space: Any, overrides: Mapping[str, Any],
               on_epoch: Any = None) -> tuple[Any, Any]:
        seed = candidate_seed(self.seed, genotype)
        config = trainer_config(_merge(self.trainer, overrides, {"seed": seed}))
        if config.distributed == "ddp" and not distributed.launched():  # e.g. the final training on every GPU
            result = processes.train_in_processes(processes.ModelSource.of(space.compile(genotype)), self.data,
                                                    config, seed, on_epoch=on_epoch)
            return result.model, result
        seed_everything(seed)  # before building: the initial weights come from the seeded generator too
        model = space.compile(genotype).build()
        return model, train(model, self.data, config, on_epoch=on_epoch)

    def __call__(self, genotype: Sequence[int], space: Any) -> dict[str, Any]:
        curve: list[float] = []

        def on_epoch(record: Mapping[str, Any]) -> bool:
            if "val_acc" not in record:
                return False
            curve.append(float(record["val_acc"]))
            return self.stopper is not None and self.stopper.should_stop(curve)

        _, result = self._train(genotype, space, {"evaluate_test": False, "progress": False, "log_epochs": False,
                                                  **self.search_overrides}, on_epoch)
        metrics: dict[str, Any] = {k: v for k, v in result.metrics.items() if isinstance(v, (int, float, str, bool))}
        metrics["val_curve"] = curve
        if result.ok:
            metrics["accuracy"] = float(result.metrics["val_acc"])
            self.observe(metrics)
        return metrics

    def observe(self, metrics: Mapping[str, Any]) -> None:
        """Learn from a result (the loop also hands over results replayed on resume)."""
        if self.stopper is not None and metrics.get("status", "ok") == "ok" and metrics.get("val_curve"):
            self.stopper.observe(metrics["val_curve"])

    def observe_all(self, results: Sequence[Mapping[str, Any]]) -> None:
        """Know exactly these results, nothing else (a parallel worker is told every recorded result before each
        candidate, so its stopping decisions do not depend on which earlier tasks it happened to run)."""
        if self.stopper is not None:
            self.stopper.averages.clear()
            for metrics in results:
                self.observe(metrics)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_data": None}  # a copy sent to a worker loads the data itself, once

    def final_settings(self, genotype: Sequence[int], space: Any) -> str:
        """A fingerprint of everything the final training of ``genotype`` depends on (the network's source, the
        data set, the trainer with the final overrides, the seed; not the progress display)."""
        trainer = _merge(self.trainer, {"evaluate_test": True, **self.final_overrides})
        trainer.pop("progress", None)
        settings = {"source": space.compile(genotype).source, "dataset": self.dataset_config, "trainer": trainer,
                    "seed": candidate_seed(self.seed, genotype)}
        return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()

    def final(self, genotype: Sequence[int], space: Any, out: Path) -> dict[str, Any]:
        """Train once more with the final budget, measure test accuracy, and save weights.pt for model.py. A
        finished final training of the same network with the same settings in ``out`` (a command run again after
        its search had ended) is read back, not repeated: it is seeded, so it would give the same."""
        fingerprint = self.final_settings(genotype, space)
        done = _finished_final(out, fingerprint)
        if done is not None:
            print(f"{out}: the final training of this architecture with these settings is there already "
                  "(metrics.json, weights.pt); not trained again")
            return done
        for stale in ("metrics.json", "weights.pt"):   # an earlier final training's: never left beside this one's
            (out / stale).unlink(missing_ok=True)
        model, result = self._train(genotype, space, {"evaluate_test": True, **self.final_overrides})
        metrics = {k: v for k, v in result.metrics.items() if isinstance(v, (int, float, str, bool))}
        metrics["trained_with"] = {"settings_sha256": fingerprint}
        # model.py expects inputs normalised like this: (pixels / 255 - mean) / std, per channel
        metrics["normalization"] = {"mean": list(self.data.mean), "std": list(self.data.std)}
        if result.ok:
            trained = result.model if result.model is not None else model
            partial = out / "weights.pt.tmp"
            torch.save({k: v.detach().cpu() for k, v in trained.state_dict().items()}, partial)
            os.replace(partial, out / "weights.pt")
            metrics["weights"] = "weights.pt"
        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")   # last: marks it finished
        return metrics


def _finished_final(out: Path, fingerprint: str) -> dict[str, Any] | None:
    """The metrics of a finished final training in ``out`` with these settings, or None. metrics.json is written
    last, after weights.pt, so a training cut short leaves none."""
    try:
        metrics = json.loads((out / "metrics.json").read_text())
    except (FileNotFoundError, ValueError):   # none, or not JSON (UnicodeDecodeError is a ValueError too)
        return None
    if not isinstance(metrics, dict) or metrics.get("trained_with") != {"settings_sha256": fingerprint}:
        return None
    if metrics.get("status", "ok") == "ok" and not (out / "weights.pt").is_file():
        return None
    return metrics
