"""The trainer: any ``nn.Module`` on any DataSplits, for a budget of epochs or steps, on CPU or CUDA.

``train(model, data, config)`` returns a TrainResult with a status: 'ok', 'diverged' (the loss became NaN or
infinite) or 'oom' (CUDA out of memory). Failures are results, not exceptions, so a search can record them and go
on. Training time counts the optimisation steps (and the whitening set-up), not the evaluations nor
the untimed warm-up (``untimed_warmup``).
"""
from __future__ import annotations

import copy
import logging
import math
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from search.data.augment import AugmentConfig, check_fits
from search.data.base import DataSplits
from search.data.loader import DeviceLoader
from search.training.averaging import Ema, Lookahead
from search.training import distributed
from search.training.checks import check_config, trainer_config
from search.training.config import ConfigError, TrainerConfig
from search.training.init import INITS
from search.training.optim import build_optimizer, norm_parameters
from search.training.precision import Precision, resolve_precision
from search.training.schedules import build_scheduler
from search.training.threads import resolve_cpu_threads
from search.training.tta import evaluate
from search.training.whitening import first_conv, whiten_conv

log = logging.getLogger(__name__)

OK, DIVERGED, OOM = "ok", "diverged", "oom"


@dataclass
class TrainResult:
    status: str                                  # ok | diverged | oom
    message: str                                 # one line for people
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)   # one record per epoch
    model: nn.Module | None = None               # the trained model (on the training device)

    @property
    def ok(self) -> bool:
        return self.status == OK


class Diverged(Exception):
    pass


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", f"device '{name}' requested but CUDA is not available", hint="use device=auto")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices). Call it before building the model for reproducible weights."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Stopwatch:
    """Accumulates wall time between start() and stop(), synchronising CUDA so queued kernels are counted."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.total, self._t0 = device, 0.0, None

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def start(self) -> None:
        self._sync()
        self._t0 = time.perf_counter()

    def stop(self) -> float:
        self._sync()
        self.total += time.perf_counter() - self._t0  # type: ignore[operator]
        self._t0 = None
        return self.total

    def elapsed(self) -> float:
        """So far, without synchronising (for progress displays)."""
        return self.total + (time.perf_counter() - self._t0 if self._t0 is not None else 0.0)


class _GlobalFlags:
    """Process-wide torch settings for one run (cuDNN autotuning or deterministic kernels, CPU threads),
    restored afterwards so a run never changes the settings of the code that called it."""

    def __init__(self, cfg: TrainerConfig, threads: int | None) -> None:
        self.deterministic = cfg.deterministic
        self.threads = threads

    def __enter__(self) -> None:
        self.saved = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
                      torch.are_deterministic_algorithms_enabled(), torch.get_num_threads())
        torch.backends.cudnn.benchmark = not self.deterministic
        torch.backends.cudnn.deterministic = self.deterministic
        if self.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        if self.threads:
            torch.set_num_threads(self.threads)

    def __exit__(self, *exc: object) -> None:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic, algorithms, threads = self.saved
        torch.use_deterministic_algorithms(algorithms)
        if self.threads:
            torch.set_num_threads(threads)


def training_loss(outputs: torch.Tensor | tuple[torch.Tensor, ...], labels: torch.Tensor,
                  loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                  aux_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(main logits, loss) of one training forward. A model with auxiliary outputs returns (main, aux, ...) in
    training mode; each auxiliary loss joins with ``aux_weight`` (DARTS: loss = main + 0.4 * aux). Accuracy is
    the main output's."""
    if not isinstance(outputs, tuple):
        return outputs, loss_fn(outputs.float(), labels)
    logits, *aux = outputs
    loss = loss_fn(logits.float(), labels)
    if aux_weight:
        loss = loss + aux_weight * sum(loss_fn(a.float(), labels) for a in aux)
    return logits, loss


def drop_path_layers(model: nn.Module) -> list[nn.Dropout1d]:
    """The model's drop-path layers: the ``drop_path`` op lowers to an ``nn.Dropout1d`` (compiler/ir/builtin_ops.py)
    whose probability the trainer sets each epoch. A model without any cannot take ``trainer.drop_path``."""
    layers = [m for m in model.modules() if isinstance(m, nn.Dropout1d)]
    if not layers:
        raise ConfigError("drop_path", "trainer.drop_path is set but the model has no drop_path layers",
                          hint="add `-> drop_path` after the ops of the model's cells (as examples/spaces/darts.arch "
                               "does), or set trainer.drop_path=0")
    return layers


EpochHook = Callable[[dict[str, Any]], "bool | None"]


class Trainer:
    """Reusable: ``Trainer(config).fit(model, data)``; ``on_epoch`` receives each epoch's record as it is made and
    may return True to end training after that epoch (early stopping of a search's bad candidates): the run then
    finishes as usual, on the weights it has, and its metrics say ``stopped_epoch``."""

    def __init__(self, config: TrainerConfig | Mapping[str, Any] | None = None,
                 on_epoch: EpochHook | None = None) -> None:
        self.cfg = config if isinstance(config, TrainerConfig) else trainer_config(config)
        check_config(self.cfg)
        self.on_epoch = on_epoch

    def fit(self, model: nn.Module, data: DataSplits) -> TrainResult:
        device = resolve_device(self.cfg.device)
        on_cpu = device.type == "cpu"
        if self.cfg.distributed == "ddp":  # one of several processes (torchrun's, or train_in_processes')
            with distributed.process_group(device) as rank:
                distributed.check_batch(self.cfg, rank.world)
                threads = (resolve_cpu_threads(self.cfg.cpu_threads, model, data.input_shape,
                                               self.cfg.batch_size // rank.world) if on_cpu else None)
                with _GlobalFlags(self.cfg, threads):
                    return _Run(self.cfg, model, data, self.on_epoch, rank).run()
        threads = (resolve_cpu_threads(self.cfg.cpu_threads, model, data.input_shape, self.cfg.batch_size)
                   if on_cpu else None)
        with _GlobalFlags(self.cfg, threads):
            return _Run(self.cfg, model, data, self.on_epoch).run()


def train(model: nn.Module, data: DataSplits, config: TrainerConfig | Mapping[str, Any] | None = None, *,
          on_epoch: EpochHook | None = None, **overrides: Any) -> TrainResult:
    """Train ``model`` on ``data.train``; validation accuracy per epoch; test accuracy at the end."""
    cfg = trainer_config(config, **overrides) if overrides or not isinstance(config, TrainerConfig) else config
    return Trainer(cfg, on_epoch).fit(model, data)


class _Run:
    """One training run: set-up, the step loop, final evaluation. Keeps the loop's state in one place."""

    def __init__(self, cfg: TrainerConfig, model: nn.Module, data: DataSplits, on_epoch: EpochHook | None,
                 rank: distributed.Rank = distributed.SINGLE) -> None:
        self.cfg, self.data, self.on_epoch, self.rank = cfg, data, on_epoch, rank
        self.ddp = cfg.distributed == "ddp"
        self.device = resolve_device(cfg.device)
        if self.ddp:
            self.device = distributed.rank_device(self.device, rank)
        self.precision: Precision = resolve_precision(cfg.precision, self.device)
        self.channels_last = cfg.channels_last if cfg.channels_last is not None else self.device.type == "cuda"
        self.model = model
        self.history: list[dict[str, Any]] = []
        self.step = 0
        self.watch = Stopwatch(self.device)
        self.eval_time = 0.0
        self.best: tuple[float, int] = (-math.inf, -1)
        self.best_state: dict[str, torch.Tensor] | None = None
        self.stopped_epoch: int | None = None  # set when on_epoch asked to stop

    # ---- set-up ---------------------------------------------------------------------------------
    def loader(self, split: Any, batch_size: int, train: bool) -> DeviceLoader:
        augment = (self.cfg.augment or AugmentConfig(**self.data.augment)) if train else None
        if augment is not None:
            check_fits(augment, tuple(split.images.shape), "trainer.augment" if self.cfg.augment else "dataset.augment")
        return DeviceLoader(split, batch_size, self.device, self.data.mean, self.data.std, augment=augment,
                            shuffle=train, drop_last=train, seed=self.cfg.seed, channels_last=self.channels_last,
                            dtype=self.precision.input_dtype,
                            shard=(self.rank.rank, self.rank.world) if train else (0, 1))  # all ranks evaluate all

    def prepare_model(self) -> None:
        cfg, model = self.cfg, self.model
        model.to(self.device)
        INITS[cfg.init](model)
        if not cfg.train_norm_weights:
            norms = norm_parameters(model)
            for name, p in model.named_parameters():
                if id(p) in norms and name.endswith("weight"):
                    p.requires_grad_(False)
        self.precision.prepare(model)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)

    def whiten(self) -> nn.Conv2d:
        """Whiten the first conv on a seeded sample of normalised training images (timed as training)."""
        w = self.cfg.whiten_stem
        generator = torch.Generator().manual_seed(self.cfg.seed)
        index = torch.randperm(len(self.data.train), generator=generator)[:w.images].to(self.device)
        images = self.train_loader.normalize(self.train_loader.images[index])
        conv = first_conv(self.model)
        whiten_conv(conv, images, w.eps)
        return conv

    def warm_up(self, steps: int) -> None:
        """``steps`` untimed training steps of a throwaway copy of the model on the first training images (and its
        whitening, when configured): cuDNN autotunes its kernels for these shapes and CUDA sets itself up here, not
        in the timed run. The model, the data order and the random streams are left as they were."""
        cfg, loader = self.cfg, self.train_loader
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            model = copy.deepcopy(self.model)
            if cfg.whiten_stem.enabled:
                sample = loader.images[:min(len(loader.images), cfg.whiten_stem.images)]
                whiten_conv(first_conv(model), loader.normalize(sample), cfg.whiten_stem.eps)
            optimizer = build_optimizer(model, cfg.optimizer, fused=self.device.type == "cuda")
            scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.grad_scaler)
            x = loader.finish(loader.normalize(loader.images[:loader.batch_size]))
            y = loader.labels[:loader.batch_size]
            model.train()
            for _ in range(steps):
                with self.precision.context(self.device):
                    _, loss = training_loss(model(x), y, self.loss_fn, cfg.aux_weight)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            del model, optimizer
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def total_steps(self) -> int:
        budget, per_epoch = self.cfg.budget, len(self.train_loader)
        return budget.steps if budget.steps is not None else max(1, math.ceil(budget.epochs * per_epoch))

    # ---- the run ----------------------------------------------------------------------------------
    def setup(self) -> None:
        cfg = self.cfg
        self.prepare_model()
        self.train_loader = self.loader(self.data.train, cfg.batch_size, True)
        self.val_loader = self.loader(self.data.val, cfg.eval_batch_size, False)
        self.total = self.total_steps()
        self.epochs = math.ceil(self.total / len(self.train_loader))
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing, reduction=cfg.loss_reduction)
        if cfg.untimed_warmup:
            self.warm_up(cfg.untimed_warmup)
        self.watch.start()
        self.stem = self.whiten() if cfg.whiten_stem.enabled else None
        self.watch.stop()
        self.optimizer = build_optimizer(self.model, cfg.optimizer, fused=self.device.type == "cuda")
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, self.total)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.grad_scaler)
        self.ema = Ema(self.model, cfg.ema) if cfg.ema.enabled else None
        self.lookahead = Lookahead(self.model, cfg.lookahead, self.total) if cfg.lookahead.enabled else None
        trained = distributed.wrap(self.model, self.device, cfg) if self.ddp else self.model
        self.forward = torch.compile(trained, mode=cfg.compile_mode) if cfg.compile else trained
        self.drop_paths = drop_path_layers(self.model) if cfg.drop_path else []
        # DDP averages the ranks' gradients: the gradient of a sum over the global batch is world x their mean
        self.loss_scale = self.rank.world if cfg.loss_reduction == "sum" else 1

    def run(self) -> TrainResult:
        cfg = self.cfg
        show = (cfg.progress if cfg.progress is not None else sys.stderr.isatty()) and self.rank.writer
        self.bar = tqdm(total=None, disable=not show, unit="step", dynamic_ncols=True, leave=False)
        metrics: dict[str, Any] = {}
        seed_everything(cfg.seed)   # dropout and any other global randomness; the data has its own generator
        try:
            self.setup()
            self.bar.reset(total=self.total)
            for epoch in range(self.epochs):
                if self.train_epoch(epoch):
                    self.stopped_epoch = epoch + 1
                    break
            self.finish()
            metrics = self.final_metrics()
            status, message = OK, self.summary(metrics)
        except Diverged as err:
            status, message = DIVERGED, str(err)
        except torch.OutOfMemoryError as err:
            status = OOM
            message = (f"out of memory at step {self.step} with batch size {cfg.batch_size} "
                       f"({str(err).splitlines()[0][:120]}): lower trainer.batch_size or use a smaller model")
            self.release_memory()
        finally:
            self.bar.close()
        return TrainResult(status, message, {**self.base_metrics(), **metrics, "status": status, "message": message},
                           self.history, self.model)

    def train_epoch(self, epoch: int) -> bool:
        """One epoch; True when the on_epoch hook asks to stop here."""
        cfg, model = self.cfg, self.model
        if self.stem is not None and self.stem.bias is not None and cfg.whiten_stem.bias_epochs is not None:
            self.stem.bias.requires_grad_(epoch < cfg.whiten_stem.bias_epochs)
        model.train()
        for layer in self.drop_paths:   # DARTS' schedule: linear from 0 towards drop_path over the epochs
            layer.p = cfg.drop_path * epoch / self.epochs
        per_mean = cfg.loss_reduction == "mean"
        loss_total = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        seen, start_time = 0, self.watch.total
        self.watch.start()
        for x, y in self.train_loader:
            with self.precision.context(self.device):
                logits, loss = training_loss(self.forward(x), y, self.loss_fn, cfg.aux_weight)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss * self.loss_scale if self.loss_scale != 1 else loss).backward()
            if cfg.grad_clip is not None:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            self.step += 1
            if self.lookahead is not None:
                self.lookahead.step(self.step)
            if self.ema is not None:
                self.ema.step(model, self.step)
            loss_total += loss.detach() * len(y) if per_mean else loss.detach()
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
            last = self.step >= self.total
            if self.step % cfg.log_every == 0 or last:
                self.check(loss_total, epoch)
                self.bar.update(self.step - self.bar.n)
                self.bar.set_postfix(loss=f"{loss_total.item() / seen:.3f}", acc=f"{correct.item() / seen:.1%}",
                                     img_s=f"{self.step * cfg.batch_size / max(self.watch.elapsed(), 1e-9):,.0f}")
            if last:
                break
        self.watch.stop()
        self.check(loss_total, epoch)
        if self.rank.world > 1:  # the epoch's loss and accuracy over every rank's slice of the batches
            loss_total, correct, total = distributed.all_sum(loss_total, correct, torch.tensor(seen))
            seen = int(total.item())
            distributed.average_buffers(model)  # every rank evaluates (and ends on) the same weights
        record = {"epoch": epoch + 1, "step": self.step, "lr": self.optimizer.param_groups[0]["lr"],
                  "train_loss": loss_total.item() / max(seen, 1), "train_acc": correct.item() / max(seen, 1),
                  "time_s": round(self.watch.total, 4),
                  "images_per_s": seen / max(self.watch.total - start_time, 1e-9)}
        final = epoch + 1 == self.epochs
        if len(self.data.val) and (final or (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0)):
            record["val_acc"] = self.timed_eval(self.eval_model(), self.val_loader)
            if record["val_acc"] > self.best[0]:
                self.best = (record["val_acc"], epoch + 1)
                if cfg.keep_best:
                    self.best_state = {k: v.detach().clone() for k, v in self.eval_model().state_dict().items()}
        self.history.append(record)
        say = log.info if self.rank.writer and cfg.log_epochs else log.debug  # under DDP, rank 0 alone reports
        say("epoch %d/%d  step %d  loss %.4f  train %.2f%%%s  %.0f img/s", epoch + 1, self.epochs, self.step,
            record["train_loss"], 100 * record["train_acc"],
            f"  val {100 * record['val_acc']:.2f}%" if "val_acc" in record else "", record["images_per_s"])
        return bool(self.on_epoch(record)) if self.on_epoch is not None else False

    def check(self, loss_total: torch.Tensor, epoch: int) -> None:
        if self.rank.world > 1:  # every rank stops together when any one diverges (else the others would wait)
            loss_total = distributed.all_sum(loss_total)[0]
        if not torch.isfinite(loss_total):
            raise Diverged(f"the training loss became {loss_total.item()} by step {self.step} (epoch {epoch + 1}): "
                           "lower trainer.optimizer.lr or set trainer.grad_clip")

    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def timed_eval(self, model: nn.Module, loader: DeviceLoader, tta: str = "none") -> float:
        start = time.perf_counter()
        accuracy = evaluate(model, loader, self.precision, tta)
        self.eval_time += time.perf_counter() - start
        return accuracy

    @torch.no_grad()
    def finish(self) -> None:
        """Leave the model holding the weights that are evaluated and saved."""
        if self.lookahead is not None:
            self.lookahead.finish()
        if self.ema is not None:
            self.ema.copy_to(self.model)
        if self.cfg.keep_best and self.best_state is not None:
            self.model.load_state_dict(self.best_state)

    def final_metrics(self) -> dict[str, Any]:
        cfg, metrics = self.cfg, {}
        if len(self.data.val):
            changed = self.lookahead is not None or self.cfg.keep_best
            last = self.history[-1].get("val_acc")
            metrics["val_acc"] = self.timed_eval(self.model, self.val_loader) if changed or last is None else last
            metrics["best_val_acc"], metrics["best_epoch"] = max(self.best, (metrics["val_acc"], len(self.history)))
        if self.stopped_epoch is not None:
            metrics["stopped_epoch"] = self.stopped_epoch
        if cfg.evaluate_test and len(self.data.test):
            test_loader = self.loader(self.data.test, cfg.eval_batch_size, False)
            before = self.eval_time
            metrics["test_acc"] = self.timed_eval(self.model, test_loader)
            metrics["test_time_s"] = round(self.eval_time - before, 4)
            if cfg.tta != "none":
                before = self.eval_time
                metrics["test_acc_tta"] = self.timed_eval(self.model, test_loader, cfg.tta)
                metrics["test_tta_time_s"] = round(self.eval_time - before, 4)
        return metrics

    def base_metrics(self) -> dict[str, Any]:
        last = self.history[-1] if self.history else {}
        images = self.step * self.cfg.batch_size
        per_epoch = len(self.train_loader) if hasattr(self, "train_loader") else 0
        return {
            "steps": self.step, "epochs": round(self.step / per_epoch, 4) if per_epoch else 0.0,
            "train_loss": last.get("train_loss"), "train_acc": last.get("train_acc"),
            "train_time_s": round(self.watch.total, 4), "eval_time_s": round(self.eval_time, 4),
            "images_per_s": round(images / self.watch.total, 1) if self.watch.total else None,
            "batch_size": self.cfg.batch_size, "device": str(self.device),
            "device_name": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
            "precision": self.precision.name, "channels_last": self.channels_last, "compile": self.cfg.compile,
            "cpu_threads": torch.get_num_threads() if self.device.type == "cpu" else None,
            **({"distributed": "ddp", "processes": self.rank.world} if self.ddp else {}),
        }

    def summary(self, metrics: Mapping[str, Any]) -> str:
        parts = [f"{self.step} steps in {self.watch.total:.1f} s"]
        parts += [f"{k} {100 * metrics[k]:.2f}%" for k in ("val_acc", "best_val_acc", "test_acc", "test_acc_tta")
                  if k in metrics]
        return ", ".join(parts)

    def release_memory(self) -> None:
        if hasattr(self, "optimizer"):
            self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
