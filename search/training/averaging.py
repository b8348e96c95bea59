"""Weight averaging: an exponential moving average (EMA) kept beside the model, and Lookahead, which pulls the
model itself back to a slow average every few steps (airbench's variant, with a decay that grows over training)."""
from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from search.training.config import EmaConfig, LookaheadConfig


def _float_entries(model: nn.Module) -> list[torch.Tensor]:
    """Parameters and floating buffers (BN running statistics), in state_dict order; skips integer counters."""
    return [t for t in model.state_dict().values() if t.is_floating_point()]


class Ema:
    """An EMA of parameters and buffers (``torch.optim.swa_utils.AveragedModel``), updated every N steps."""

    def __init__(self, model: nn.Module, cfg: EmaConfig) -> None:
        self.cfg = cfg
        self.average = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.decay), use_buffers=True)

    def step(self, model: nn.Module, step: int) -> None:
        if step % self.cfg.every == 0:
            self.average.update_parameters(model)

    @property
    def module(self) -> nn.Module:
        return self.average.module

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        for mine, theirs in zip(_float_entries(self.average.module), _float_entries(model)):
            theirs.copy_(mine)


class Lookahead:
    """Every ``every`` steps: slow <- lerp(slow, fast, 1 - alpha); fast <- slow, with
    alpha = decay**every * progress**power (progress = step / total). ``finish`` leaves the model on the slow weights.
    """

    def __init__(self, model: nn.Module, cfg: LookaheadConfig, total_steps: int) -> None:
        self.cfg, self.total = cfg, max(total_steps, 1)
        self.fast = _float_entries(model)   # views of the model's own tensors: built once, updated in place
        self.slow = [t.detach().clone() for t in self.fast]

    @torch.no_grad()
    def step(self, step: int) -> None:
        if step % self.cfg.every == 0:
            alpha = self.cfg.decay ** self.cfg.every * (step / self.total) ** self.cfg.power
            self._sync(alpha)

    @torch.no_grad()
    def finish(self) -> None:
        self._sync(1.0)

    def _sync(self, alpha: float) -> None:
        torch._foreach_lerp_(self.slow, self.fast, 1.0 - alpha)
        torch._foreach_copy_(self.fast, self.slow)
