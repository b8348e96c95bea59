"""How architecture logits become the supernet's mixing weights (``search.relaxation``), and the regulariser that
fights DARTS' collapse (``search.beta_decay``).

* ``softmax`` (DARTS, Liu et al. 2019): ``softmax(alpha)`` of every decision, the same in every step.
* ``dirichlet`` (DrNAS, Chen et al. 2021): the mixing weights are a sample of ``Dirichlet(elu(alpha) + 1)``, drawn
  anew for every batch (reparameterised, so the architecture step differentiates through the draw); the noise
  explores, and the concentrations grow only where an option keeps winning. Its mean (concentrations
  normalised) is what derivation, reports and the cost penalty read. Optional KL term towards Dirichlet(1).
* ``gumbel`` (GDAS, Dong & Yang 2019): one op per decision per batch, drawn by Gumbel-max from
  ``log_softmax(alpha)`` at temperature tau (linear from ``gumbel.tau_max`` to ``gumbel.tau_min`` over the
  epochs); the forward computes only that path (``active``), scaled by its hard weight, while the backward reaches
  the logits through the temperature-softmax (straight-through). Memory and time: one op per edge.

beta-decay (beta-DARTS, Ye et al. 2022) adds ``lambda * mean_d logsumexp(alpha_d)`` to the architecture loss, with
lambda rising linearly from 0 to ``beta_decay.weight`` over the epochs (the paper: ``50 * epoch / 100``). Its
gradient is ``lambda * softmax(alpha_d) / D``: every logit is pulled down, the strongest most, so the spread of the
logits (and the largest mixing weight) stays small and no option runs away with the mixture early (the
skip-connection collapse); the held-out loss still decides the ranking. Under Adam the weight matters relative to
the held-out gradients: far above them, the differences between options stop moving at all.

All randomness draws from torch's global generator (the device's on a GPU), which the search checkpoints: a
resumed run draws the same.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import torch
from torch.distributions import Dirichlet, kl_divergence
from torch.nn import functional as F

from search.darts.config import DartsConfig


@dataclass
class Mixing:
    """What one forward of the supernet uses: a probability vector per decision, and the one option per decision
    to compute (GDAS) or None (all options)."""
    weights: list[torch.Tensor]
    active: list[int] | None = None


class Relaxation(Protocol):
    name: str
    label: str      # the method in a few words, for the log and the report
    one_path: bool  # whether a training step computes one option per decision (the memory estimate)

    def sample(self, alphas: Sequence[torch.Tensor], progress: float) -> Mixing:
        """The mixing for one training batch; ``progress`` in [0, 1] is the epoch's place in the schedule.
        Differentiable in ``alphas`` (the architecture step backpropagates through it)."""

    def expected(self, alphas: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The deterministic mixing probabilities: derivation, reports and the cost penalty."""

    def evaluation(self, alphas: Sequence[torch.Tensor]) -> Mixing:
        """The mixing the supernet is validated with."""

    def regularizer(self, alphas: Sequence[torch.Tensor]) -> torch.Tensor | None:
        """A term of the architecture loss that belongs to the relaxation itself (None: none)."""

    def schedule(self, progress: float) -> dict[str, float]:
        """The scheduled values at ``progress``, for the epoch's record (GDAS: the temperature)."""


class SoftmaxRelaxation:
    name = "softmax"
    label = "softmax mixing"
    one_path = False

    @classmethod
    def from_config(cls, cfg: DartsConfig) -> "SoftmaxRelaxation":
        return cls()

    def sample(self, alphas: Sequence[torch.Tensor], progress: float) -> Mixing:
        return Mixing(self.expected(alphas))

    def expected(self, alphas: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [torch.softmax(a, dim=0) for a in alphas]

    def evaluation(self, alphas: Sequence[torch.Tensor]) -> Mixing:
        return Mixing(self.expected(alphas))

    def regularizer(self, alphas: Sequence[torch.Tensor]) -> torch.Tensor | None:
        return None

    def schedule(self, progress: float) -> dict[str, float]:
        return {}


class DirichletRelaxation:
    name = "dirichlet"
    label = "Dirichlet mixing (DrNAS)"
    one_path = False

    def __init__(self, kl_weight: float = 0.0) -> None:
        self.kl_weight = kl_weight

    @classmethod
    def from_config(cls, cfg: DartsConfig) -> "DirichletRelaxation":
        return cls(cfg.dirichlet.kl_weight)

    @staticmethod
    def concentrations(alphas: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [F.elu(a) + 1.0 for a in alphas]

    def sample(self, alphas: Sequence[torch.Tensor], progress: float) -> Mixing:
        return Mixing([Dirichlet(c).rsample() for c in self.concentrations(alphas)])

    def expected(self, alphas: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [c / c.sum() for c in self.concentrations(alphas)]  # the Dirichlet's mean

    def evaluation(self, alphas: Sequence[torch.Tensor]) -> Mixing:
        return Mixing(self.expected(alphas))

    def regularizer(self, alphas: Sequence[torch.Tensor]) -> torch.Tensor | None:
        if not self.kl_weight:
            return None
        terms = [kl_divergence(Dirichlet(c), Dirichlet(torch.ones_like(c))) for c in self.concentrations(alphas)]
        return self.kl_weight * torch.stack(terms).sum()

    def schedule(self, progress: float) -> dict[str, float]:
        return {}


class GumbelRelaxation:
    name = "gumbel"
    label = "one Gumbel-sampled path per step (GDAS)"
    one_path = True   # computes one option per decision and step (memory: one path)

    def __init__(self, tau_max: float, tau_min: float) -> None:
        self.tau_max, self.tau_min = tau_max, tau_min

    @classmethod
    def from_config(cls, cfg: DartsConfig) -> "GumbelRelaxation":
        return cls(cfg.gumbel.tau_max, cfg.gumbel.tau_min)

    def tau(self, progress: float) -> float:
        return self.tau_max - (self.tau_max - self.tau_min) * progress

    def sample(self, alphas: Sequence[torch.Tensor], progress: float) -> Mixing:
        tau = self.tau(progress)
        weights, active = [], []
        for a in alphas:
            while True:  # an infinite Gumbel draw (log of an exponential 0) is redrawn, as GDAS does
                gumbel = -torch.empty_like(a).exponential_().log()
                if torch.isfinite(gumbel).all():
                    break
            soft = torch.softmax((torch.log_softmax(a, dim=0) + gumbel) / tau, dim=0)
            k = int(soft.argmax())
            hard = F.one_hot(torch.tensor(k, device=a.device), len(a)).to(soft.dtype)
            weights.append(hard - soft.detach() + soft)  # forward: one-hot; backward: the softmax's gradient
            active.append(k)
        return Mixing(weights, active)

    def expected(self, alphas: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [torch.softmax(a, dim=0) for a in alphas]

    def evaluation(self, alphas: Sequence[torch.Tensor]) -> Mixing:
        """The strongest path alone: GDAS trains one path at a time, never the mixture."""
        active = [int(a.argmax()) for a in alphas]
        return Mixing([F.one_hot(torch.tensor(k, device=a.device), len(a)).to(a.dtype) for a, k in zip(alphas, active)],
                      active)

    def regularizer(self, alphas: Sequence[torch.Tensor]) -> torch.Tensor | None:
        return None

    def schedule(self, progress: float) -> dict[str, float]:
        return {"tau": self.tau(progress)}


# search.relaxation -> its class; the names are config.RELAXATIONS (checked there, before anything is built)
RELAXATION_CLASSES: dict[str, type[SoftmaxRelaxation | DirichletRelaxation | GumbelRelaxation]] = {
    cls.name: cls for cls in (SoftmaxRelaxation, DirichletRelaxation, GumbelRelaxation)}


def build_relaxation(cfg: DartsConfig) -> Relaxation:
    return RELAXATION_CLASSES[cfg.relaxation].from_config(cfg)


def beta_decay(alphas: Sequence[torch.Tensor]) -> torch.Tensor:
    """beta-DARTS' regulariser: the mean over decisions of ``logsumexp`` of their logits."""
    return torch.stack([torch.logsumexp(a, dim=0) for a in alphas]).mean()


def beta_decay_weight(cfg: DartsConfig, epoch: int) -> float:
    """lambda in epoch ``epoch`` (0-based): linear from 0 towards ``beta_decay.weight`` (50 * epoch / 100 in the
    paper's 100-epoch search)."""
    return cfg.beta_decay.weight * epoch / cfg.epochs
