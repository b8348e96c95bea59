"""DARTS' bilevel optimisation of a supernet: weight steps on one part of the training split, architecture steps
on the held-out rest (never the test split), one of each per batch, as in Liu et al. (2019).

First order (default): the architecture gradient is that of the held-out loss at the current weights. Second order
(``order=2``): at the weights after one virtual SGD step, with the finite-difference Hessian-vector product of the
paper (eq. 7-8). The optional cost penalty ``cost.weight * E[cost]`` joins the architecture loss, and so do the
relaxation's own regulariser and beta-decay (relaxation.py). How the logits become mixing weights in each step
(softmax, a Dirichlet draw, one Gumbel-sampled path) is the relaxation's business; both kinds of step use it.

State (supernet, both optimizers, data order, history) is checkpointed atomically after every epoch; a run
restarted on the same checkpoint continues from the next epoch and ends as an uninterrupted run would (CPU).
"""
from __future__ import annotations

import copy
import math
import os
import pickle
import time
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from compiler.supernet import Supernet
from compiler.errors import ArchError, Span
from search.darts.config import DartsConfig
from search.darts.cost import ExpectedCost
from search.darts.relaxation import beta_decay, beta_decay_weight, build_relaxation
from search.data.augment import AugmentConfig, check_fits
from search.data.base import DataSplits, carve_validation
from search.data.loader import DeviceLoader
from search.run_config import config_changes
from search.training import resolve_device, seed_everything

CHECKPOINT_VERSION = 1
# the cost of a search epoch over a weight-only (warm-up) one: each weight step gains an architecture step, of one
# forward and backward pass (first order) or about four (second order: the unrolled step and two finite differences)
WARMUP_TO_SEARCH = {1: 2.0, 2: 5.0}


class ResumeMismatch(ArchError):
    """The checkpoint belongs to another space or configuration, or is no checkpoint of ours."""

    def __init__(self, message: str, path: Path,
                 hint: str = "use a new out_dir, or the settings of that run to resume it") -> None:
        super().__init__(message, Span(str(path), 0, 0), hint=hint)


# what a checkpoint holds (all of it plain data and tensors: it is read with weights_only=True, nothing in it runs)
STATE_KINDS: dict[str, type | tuple[type, ...]] = {
    "version": int, "identity": dict, "epochs_done": int, "model": dict, "w_opt": dict, "a_opt": dict,
    "loaders": (list, tuple), "rng": torch.Tensor, "history": list}


@contextmanager
def _frozen(params: Sequence[nn.Parameter]) -> Iterator[None]:
    """No gradient for ``params`` inside (so backward skips their kernels)."""
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def sgd_step(model: nn.Module, optimizer: torch.optim.Optimizer, params: Sequence[nn.Parameter],
             grad_clip: float | None, x: torch.Tensor, y: torch.Tensor, **mixing: Any) -> tuple[float, torch.Tensor]:
    """One step of ``optimizer`` on the cross-entropy of ``model(x, **mixing)``, the gradient of ``params`` clipped
    to ``grad_clip``: the loss and the (detached) logits."""
    logits = model(x, **mixing)
    loss = F.cross_entropy(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    return float(loss.detach()), logits.detach()


@contextmanager
def _threads(count: int | None, device: torch.device) -> Iterator[None]:
    saved = torch.get_num_threads()
    if count and device.type == "cpu":
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def cosine_lr(cfg: DartsConfig, epoch: int) -> float:
    """The weights' learning rate in ``epoch`` (0-based): cosine from lr to lr_min over the epochs."""
    w = cfg.weights
    return w.lr_min + (w.lr - w.lr_min) * 0.5 * (1.0 + math.cos(math.pi * epoch / cfg.epochs))


class BilevelSearch:
    """``run()`` -> one record per epoch: losses, accuracies, E[cost] and the softmax of every decision."""

    def __init__(self, supernet: Supernet, data: DataSplits, cfg: DartsConfig, seed: int,
                 penalty: ExpectedCost | None = None, checkpoint: Path | None = None,
                 identity: dict[str, Any] | None = None) -> None:
        self.supernet, self.data, self.cfg = supernet, data, cfg
        self.seed = seed + cfg.seed_offset
        self.penalty = penalty if penalty is not None and cfg.cost.weight > 0 else None
        self.report_cost = penalty
        self.checkpoint = checkpoint
        self.identity = identity or {}
        self.device = resolve_device(cfg.device)
        seed_everything(self.seed)                 # the supernet's initial weights and logits
        self.model = supernet.build().to(self.device)
        self.alphas = self.model.arch_parameters()       # op logits, then edge logits (if any): the Adam step's
        self.op_logits = list(self.model.alphas)         # one logits vector per relaxed decision
        self.weights = self.model.weight_parameters()
        self.relaxation = build_relaxation(cfg)
        self.progress = 0.0                              # the epoch's place in the schedules (tau), 0 .. 1
        self.beta_weight = 0.0                           # beta-decay's lambda in this epoch
        weights_split, arch_split = carve_validation(data.train, cfg.arch_fraction, self.seed)
        augment = AugmentConfig(**data.augment)
        check_fits(augment, tuple(data.train.images.shape), "dataset.augment")
        self.weight_loader = self._loader(weights_split, augment, self.seed)
        self.arch_loader = self._loader(arch_split, augment, self.seed + 1)
        self.val_loader = DeviceLoader(data.val, 1000, self.device, data.mean, data.std)
        w = cfg.weights
        self.w_opt = torch.optim.SGD(self.weights, lr=w.lr, momentum=w.momentum, weight_decay=w.weight_decay)
        a = cfg.arch
        self.a_opt = torch.optim.Adam(self.alphas, lr=a.lr, betas=tuple(a.betas),  # type: ignore[arg-type]
                                      weight_decay=a.weight_decay)
        self.history: list[dict[str, Any]] = []

    def _loader(self, split: Any, augment: AugmentConfig, seed: int) -> DeviceLoader:
        return DeviceLoader(split, self.cfg.batch_size, self.device, self.data.mean, self.data.std, augment=augment,
                            shuffle=True, drop_last=True, seed=seed)

    # ---- one step of each kind --------------------------------------------------------------------
    def arch_loss(self, x: torch.Tensor, y: torch.Tensor, params: dict[str, torch.Tensor] | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """Held-out loss (+ cost penalty and regularisers) and logits, at the model's weights or at ``params``."""
        mixing = self.relaxation.sample(self.op_logits, self.progress)
        kwargs = {"weights": mixing.weights, "active": mixing.active}
        logits = self.model(x, **kwargs) if params is None else functional_call(self.model, params, (x,), kwargs)
        loss = F.cross_entropy(logits, y)
        if self.penalty is not None:
            loss = loss + self.cfg.cost.weight * self.penalty(self.relaxation.expected(self.op_logits))
        regularizer = self.relaxation.regularizer(self.op_logits)
        if regularizer is not None:
            loss = loss + regularizer
        if self.beta_weight:
            loss = loss + self.beta_weight * beta_decay(self.op_logits)
        return loss, logits

    def arch_step(self, xw: torch.Tensor, yw: torch.Tensor, xa: torch.Tensor, ya: torch.Tensor
                  ) -> tuple[float, int]:
        if self.cfg.order == 2:
            grads, loss, logits = self._unrolled_grads(xw, yw, xa, ya)
        else:
            with _frozen(self.weights):
                loss, logits = self.arch_loss(xa, ya)
                grads = torch.autograd.grad(loss, self.alphas, allow_unused=True)
        for p, g in zip(self.alphas, grads):
            p.grad = torch.zeros_like(p) if g is None else g.detach()  # a decision no site uses: no gradient
        self.a_opt.step()
        logits = logits.detach()  # reported: the held-out cross-entropy, without penalties and regularisers
        return float(F.cross_entropy(logits, ya)), int((logits.argmax(1) == ya).sum())

    def weight_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
        with torch.no_grad():
            mixing = self.relaxation.sample(self.op_logits, self.progress)
        with _frozen(self.alphas):
            loss, logits = sgd_step(self.model, self.w_opt, self.weights, self.cfg.weights.grad_clip, x, y,
                                    weights=mixing.weights, active=mixing.active)
        return loss, int((logits.argmax(1) == y).sum())

    def _unrolled_grads(self, xw: torch.Tensor, yw: torch.Tensor, xa: torch.Tensor, ya: torch.Tensor
                        ) -> tuple[Sequence[torch.Tensor | None], torch.Tensor, torch.Tensor]:
        """Second-order DARTS: grad_alpha L_val(w', alpha) - lr * H (finite differences), w' = w - lr * dL_train."""
        ids = {id(p) for p in self.weights}
        names = [n for n, p in self.model.named_parameters() if id(p) in ids]  # the order of self.weights
        lr, w = self.w_opt.param_groups[0]["lr"], self.cfg.weights

        def state(params: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
            # copies of the buffers: the virtual passes must not move the batch-norm statistics
            return {**{n: b.clone() for n, b in self.model.named_buffers()}, **dict(zip(names, params))}

        with _frozen(self.alphas):
            train_grads = torch.autograd.grad(F.cross_entropy(self.model(xw), yw), self.weights)
        with torch.no_grad():
            virtual = []
            for p, g in zip(self.weights, train_grads):
                step = g + w.weight_decay * p
                buffer = self.w_opt.state.get(p, {}).get("momentum_buffer")
                if buffer is not None:
                    step = step + w.momentum * buffer
                virtual.append((p - lr * step).requires_grad_())
        loss, logits = self.arch_loss(xa, ya, state(virtual))
        grads = torch.autograd.grad(loss, [*self.alphas, *virtual], allow_unused=True)
        d_alpha, d_w = grads[:len(self.alphas)], grads[len(self.alphas):]
        norm = torch.sqrt(sum((g.pow(2).sum() for g in d_w if g is not None), torch.zeros(())))
        eps = 0.01 / max(float(norm), 1e-12)
        sides = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                moved = [p + sign * eps * g if g is not None else p for p, g in zip(self.weights, d_w)]
            out = functional_call(self.model, state(moved), (xw,))
            sides.append(torch.autograd.grad(F.cross_entropy(out, yw), self.alphas, allow_unused=True))
        result = []
        for da, plus, minus in zip(d_alpha, *sides):
            if da is None:
                result.append(None)
                continue
            hessian = (plus - minus) / (2 * eps) if plus is not None and minus is not None else 0.0
            result.append(da - lr * hessian)
        return result, loss, logits

    # ---- epochs -------------------------------------------------------------------------------------
    def probabilities(self) -> list[list[float]]:
        """The relaxation's mixing probabilities of every decision (derivation reads the last epoch's)."""
        with torch.no_grad():
            return [p.double().tolist() for p in self.relaxation.expected(self.op_logits)]

    def edge_probabilities(self) -> list[list[float]]:
        with torch.no_grad():
            return [p.double().tolist() for p in self.model.edge_weights()]

    def threads(self) -> AbstractContextManager[None]:
        """The configured torch threads (search.cpu_threads) for work on the supernet outside ``run``."""
        return _threads(self.cfg.cpu_threads, self.device)

    def val_inputs(self, count: int) -> torch.Tensor | None:
        """``count`` images of the validation split (all of it when smaller) drawn at random with the run's seed,
        normalised on the device; None: no validation split. At random because the split keeps the data set's order,
        which is by class: the first 64 validation images of CIFAR-10 are all airplanes."""
        total = len(self.data.val)
        if total == 0:
            return None
        index = torch.randperm(total, generator=torch.Generator().manual_seed(self.seed))[:count]
        loader = DeviceLoader(self.data.val.subset(index), len(index), self.device, self.data.mean, self.data.std)
        return next(iter(loader))[0]

    @torch.no_grad()
    def validate(self) -> float:
        """The supernet's accuracy on the validation split, mixed as the relaxation mixes for evaluation."""
        if not len(self.val_loader.labels):
            return float("nan")
        self.model.eval()
        mixing = self.relaxation.evaluation(self.op_logits)
        correct = sum(int((self.model(x, weights=mixing.weights, active=mixing.active).argmax(1) == y).sum())
                      for x, y in self.val_loader)
        self.model.train()
        return correct / len(self.val_loader.labels)

    def epoch(self, index: int) -> dict[str, Any]:
        start = time.perf_counter()
        lr = cosine_lr(self.cfg, index)
        for group in self.w_opt.param_groups:
            group["lr"] = lr
        self.progress = index / max(self.cfg.epochs - 1, 1)
        self.beta_weight = beta_decay_weight(self.cfg, index)
        self.model.train()
        search_arch = index >= self.cfg.warmup_epochs
        sums = {"train_loss": 0.0, "train_correct": 0, "arch_loss": 0.0, "arch_correct": 0, "n": 0}
        for (xw, yw), (xa, ya) in zip(self.weight_loader, self.arch_loader):
            if search_arch:
                loss, correct = self.arch_step(xw, yw, xa, ya)
                sums["arch_loss"] += loss * len(ya)
                sums["arch_correct"] += correct
            loss, correct = self.weight_step(xw, yw)
            if not math.isfinite(loss):
                raise FloatingPointError(f"the weights' loss became {loss} in epoch {index + 1}: lower "
                                         "search.weights.lr or set search.weights.grad_clip")
            sums["train_loss"] += loss * len(yw)
            sums["train_correct"] += correct
            sums["n"] += len(yw)
        n = max(sums["n"], 1)
        record: dict[str, Any] = {
            "epoch": index + 1, "lr": lr, "train_loss": sums["train_loss"] / n, "train_acc": sums["train_correct"] / n,
            "arch_loss": sums["arch_loss"] / n if search_arch else None,
            "arch_acc": sums["arch_correct"] / n if search_arch else None,
            "val_acc": self.validate(), "seconds": round(time.perf_counter() - start, 3),
            "softmax": self.probabilities(),
        }
        if self.model.betas:
            record["edges"] = self.edge_probabilities()
        if self.beta_weight:
            record["beta_decay"] = self.beta_weight
        record.update(self.relaxation.schedule(self.progress))
        if self.report_cost is not None:
            with torch.no_grad():
                record["expected_cost"] = float(self.report_cost.expected(self.relaxation.expected(self.op_logits)))
        return record

    def run(self, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
        with _threads(self.cfg.cpu_threads, self.device):
            first = self.restore()
            for index in range(first, self.cfg.epochs):
                if self.out_of_time():
                    break
                record = self.epoch(index)
                self.history.append(record)
                self.save(index + 1)
                if on_epoch is not None:
                    on_epoch(record)
        return self.history

    def out_of_time(self) -> bool:
        """search.max_seconds: would one more epoch, as slow as the slowest so far, pass the limit? Epochs with
        architecture steps (after warmup_epochs) are compared with their own kind; the first of them is estimated
        from the weight-only epochs (WARMUP_TO_SEARCH times the slowest). Counted from the recorded epochs' seconds,
        so a resumed run stops where the uninterrupted one would."""
        limit, seconds = self.cfg.max_seconds, [record["seconds"] for record in self.history]
        if limit is None or not seconds:
            return False
        warmup, searching = seconds[:self.cfg.warmup_epochs], seconds[self.cfg.warmup_epochs:]
        next_epoch = max(searching) if searching else max(warmup) * (
            WARMUP_TO_SEARCH[self.cfg.order] if len(seconds) == self.cfg.warmup_epochs else 1.0)
        return sum(seconds) + next_epoch > limit

    # ---- checkpoint -----------------------------------------------------------------------------------
    def state_dict(self, epochs_done: int) -> dict[str, Any]:
        return {"version": CHECKPOINT_VERSION, "identity": self.identity, "epochs_done": epochs_done,
                "model": self.model.state_dict(), "w_opt": self.w_opt.state_dict(), "a_opt": self.a_opt.state_dict(),
                "loaders": [(loader.generator.get_state(), loader.epoch)
                            for loader in (self.weight_loader, self.arch_loader)],
                "rng": torch.get_rng_state(), "cuda_rng": self._cuda_rng_state(), "history": self.history}

    def _cuda_rng_state(self) -> torch.Tensor:
        """The device's generator on a GPU (Gumbel and Dirichlet draws come from it there); empty on the CPU."""
        if self.device.type == "cuda":
            return torch.cuda.get_rng_state(self.device)
        return torch.empty(0, dtype=torch.uint8)

    def save(self, epochs_done: int) -> None:
        if self.checkpoint is None:
            return
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint.with_name(f"{self.checkpoint.name}.{os.getpid()}.tmp")
        try:
            torch.save(self.state_dict(epochs_done), tmp)
            os.replace(tmp, self.checkpoint)
        except BaseException:  # an interrupt mid-write: the last checkpoint stays, no half-written file is left
            tmp.unlink(missing_ok=True)
            raise

    def restore(self) -> int:
        """Load the checkpoint if there is one; the index of the first epoch still to run."""
        if self.checkpoint is None or not self.checkpoint.exists():
            return 0
        state = read_checkpoint(self.checkpoint)
        if state["version"] != CHECKPOINT_VERSION or state["identity"] != self.identity:
            changes = config_changes({"version": state["version"], **state["identity"]},
                                     {"version": CHECKPOINT_VERSION, **self.identity})
            raise ResumeMismatch("holds a DARTS run that differs in\n" + "\n".join(f"    {c}" for c in changes),
                                 self.checkpoint)
        try:
            self.model.load_state_dict(state["model"])
            self.w_opt.load_state_dict(state["w_opt"])
            self.a_opt.load_state_dict(state["a_opt"])
            for loader, (generator, epoch) in zip((self.weight_loader, self.arch_loader), state["loaders"],
                                                  strict=True):
                loader.generator.set_state(generator)
                loader.epoch = int(epoch)
            torch.set_rng_state(state["rng"])
            cuda_rng = state.get("cuda_rng")   # absent in checkpoints written before it was saved
            if self.device.type == "cuda" and isinstance(cuda_rng, torch.Tensor) and cuda_rng.numel():
                torch.cuda.set_rng_state(cuda_rng, self.device)
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as err:
            raise ResumeMismatch(f"does not fit this supernet ({type(err).__name__}: "
                                 f"{str(err).splitlines()[0][:200]})", self.checkpoint) from err
        self.history = list(state["history"])
        return int(state["epochs_done"])


class Tuner:
    """DARTS-PT's fine-tuning between progressive decisions (``search.derive.finetune_steps``): weight steps of a
    copy of the trained supernet (the search's own model and checkpoint stay as trained) on the weights' part of the
    training split, with the mixing weights of the derivation so far (decided decisions one-hot, the others at the
    trained mixture) held fixed. DARTS-PT's own tuning also takes architecture steps, except in its fixed-alpha
    variant (a supernet whose alpha never trains; its code's `blank` method); here the weights alone are tuned.
    SGD with fresh momentum at a constant learning rate (DARTS-PT: the search's lr / 10), the search's weight decay
    and gradient clip. The batches continue the search's data order, so a resumed run, which restores that order
    with the supernet, derives the same."""

    def __init__(self, search: BilevelSearch, lr: float | None = None) -> None:
        w = search.cfg.weights
        self.model = copy.deepcopy(search.model).train()
        for p in self.model.arch_parameters():      # the architecture logits stay as trained
            p.requires_grad_(False)
        self.params, self.grad_clip = self.model.weight_parameters(), w.grad_clip
        self.optimizer = torch.optim.SGD(self.params, lr=lr if lr is not None else w.lr / 10, momentum=w.momentum,
                                         weight_decay=w.weight_decay)
        self.batches = _endless(search.weight_loader)   # the search is over: its loader goes on from there

    def tune(self, weights: Sequence[torch.Tensor], steps: int) -> nn.Module:
        """The tuned copy after ``steps`` more weight steps with the mixing ``weights``."""
        mixing = [w.detach() for w in weights]
        for _ in range(steps):
            loss, _ = sgd_step(self.model, self.optimizer, self.params, self.grad_clip, *next(self.batches),
                               weights=mixing)
            if not math.isfinite(loss):
                raise FloatingPointError(f"the loss became {loss} while fine-tuning between decisions: lower "
                                         "search.derive.finetune_lr")
        return self.model


def _endless(loader: DeviceLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    while True:
        yield from loader


_DAMAGED_HINT = "delete it to start the search anew, or use a new out_dir"


def _names_a_python_object(err: pickle.UnpicklingError) -> bool:
    """Whether torch's weights-only unpickler stopped at a global (a class or function the file asks for), rather
    than at bytes that are no pickle at all."""
    return "GLOBAL" in str(err) or "Unsupported global" in str(err)


def _unpickler_reason(err: pickle.UnpicklingError) -> str:
    """The unpickler's own words from torch's long message (after 'WeightsUnpickler error:'), else its first line."""
    text = str(err)
    tail = text.split("WeightsUnpickler error:", 1)[-1] if "WeightsUnpickler error:" in text else text
    return next((line.strip() for line in tail.splitlines() if line.strip()), type(err).__name__)[:200]


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A DARTS checkpoint's data, read with weights_only=True: tensors and plain containers only. A file holding
    anything else (a pickle that would run code) or a damaged one is refused, and nothing in it runs."""
    try:
        # to the host whatever the run's device: load_state_dict copies weights and optimiser state onto the model's
        # device, while RNG states must stay CPU byte tensors (a CUDA generator's too)
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not _names_a_python_object(err):   # random bytes fail here too ("Unsupported operand")
            raise ResumeMismatch(f"is damaged or not a DARTS checkpoint (it is no pickle of tensors: "
                                 f"{_unpickler_reason(err)})", path,
                                 hint=_DAMAGED_HINT) from err
        raise ResumeMismatch("refused: it holds Python objects other than tensors and plain data (nothing in it "
                             "was run); this program never writes such a checkpoint", path,
                             hint="use a new out_dir; do not resume from a file of unknown origin") from err
    except Exception as err:  # torch.load's many ways to fail on a damaged file: one message for all
        raise ResumeMismatch(f"is damaged or not a DARTS checkpoint ({type(err).__name__}: "
                             f"{str(err).splitlines()[0][:200] if str(err) else ''})", path,
                             hint=_DAMAGED_HINT) from err
    wrong = [k for k, kind in STATE_KINDS.items() if not isinstance(state, dict) or not isinstance(state.get(k), kind)]
    if wrong:
        raise ResumeMismatch(f"is not a DARTS checkpoint (missing or wrong: {', '.join(wrong)})", path)
    return state
