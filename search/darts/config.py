"""The DARTS search's options (the ``search`` node of ``conf/search/darts.yaml``), as typed, checked dataclasses.

Defaults follow Liu et al. (2019): SGD with momentum and a cosine schedule for the weights, Adam (lr 3e-4, betas
0.5/0.999, weight decay 1e-3) for the architecture logits, half of the training split held out for the
architecture steps, first-order updates.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import DictConfig

from compiler.config_values import SEED_MAX, ConfigError
from search.structured import structured
from search.training.checks import DEVICE


class DartsConfigError(ConfigError):
    """A DARTS option that cannot work; printed as ``search.KEY: error: ...`` by the command line."""

    def __init__(self, key: str, message: str, hint: str | None = None) -> None:
        super().__init__(f"search.{key}", message, hint=hint)


@dataclass
class WeightsConfig:
    lr: float = 0.025                # SGD on the supernet's weights (train half of the training split)
    lr_min: float = 0.001            # the cosine schedule's end (per epoch, as in DARTS)
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: Optional[float] = 5.0  # global gradient-norm clip


@dataclass
class ArchConfig:
    lr: float = 3e-4                 # Adam on the architecture logits (held-out half of the training split)
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    weight_decay: float = 1e-3


@dataclass
class CostConfig:
    weight: float = 0.0              # the penalty weight x E[cost] added to the architecture loss; 0: off
    metric: str = "macs"             # macs | params | latency (a per-op table from `task=profile_ops`)
    table: Optional[str] = None      # latency: the table's path
    batch_size: int = 1              # latency: the table's batch size
    normalize: bool = True           # E[cost] as a fraction of its value at uniform architecture weights


@dataclass
class DeriveConfig:
    exclude_zero: bool = True        # DARTS never derives `zero` (an edge that does nothing)
    collapse_threshold: float = 0.5  # warn when more than this share of decisions derive parameter-free ops
    top_inputs: Optional[int] = None  # DARTS' cells: each node keeps its k strongest relaxed input edges (the
                                      # others derive `zero`); null keeps every edge
    method: str = "perturbation"     # perturbation: the option whose removal hurts the supernet most (DARTS-PT /
    #                                  Zero-Cost-PT; perturbation.py) | argmax: the largest architecture weight (DARTS)
    score: str = "naswot"            # perturbation: naswot (one minibatch) | val_acc (the validation split)
    order: str = "random"            # perturbation: decisions in a seeded random order | fixed (the space's order)
    discretize: str = "once"         # perturbation: every decision is scored in the supernet as trained | progressive:
    #                                  a decided decision is one-hot for the next (the papers', with fine-tuning)
    batch_size: int = 64             # perturbation with score=naswot: the minibatch's size
    finetune_steps: int = 0          # progressive: weight steps on the supernet after each decision (DARTS-PT's
    #                                  fine-tuning; bilevel.py's Tuner); 0: none
    finetune_lr: Optional[float] = None  # their constant learning rate; null: weights.lr / 10 (DARTS-PT's)


@dataclass
class BetaDecayConfig:
    weight: float = 0.0              # lambda at the end of the search (linear from 0; beta-DARTS: 50); 0: off


@dataclass
class DirichletConfig:
    kl_weight: float = 0.0           # relaxation=dirichlet: + kl_weight * KL(Dir(elu(alpha)+1) || Dir(1)) (DrNAS'
    #                                  optional 'kl' term; its default regulariser is arch.weight_decay)


@dataclass
class GumbelConfig:
    tau_max: float = 10.0            # relaxation=gumbel: the temperature falls linearly from tau_max in the first
    tau_min: float = 0.1             # epoch to tau_min in the last (GDAS' NAS-Bench-201 settings)


RELAXATIONS = ("softmax", "dirichlet", "gumbel")
DERIVE_METHODS = ("argmax", "perturbation")
PERTURBATION_SCORES = ("val_acc", "naswot")   # search/darts/perturbation.py
PERTURBATION_ORDERS = ("random", "fixed")
DISCRETIZE = ("progressive", "once")
FINETUNE_STEPS_MAX = 1_000_000  # a limit checked before the work (a step is one minibatch through the supernet)


@dataclass
class DartsConfig:
    name: str = "darts"
    strategy: dict[str, Any] = field(default_factory=dict)  # _target_: the strategy class (search.darts.strategy.Darts)
    epochs: int = 50                 # passes over the weights' half of the training split (as the paper)
    max_seconds: Optional[float] = None  # stop the supernet's training at the first epoch's end where one more epoch
    #                                      (estimated from the slowest so far: BilevelSearch.out_of_time) would pass
    #                                      this many seconds of training; the schedules still follow `epochs`. null:
    #                                      no limit
    batch_size: int = 64
    arch_fraction: float = 0.5       # share of the training split held out for the architecture steps
    order: int = 1                   # 1: first-order DARTS; 2: the unrolled (second-order) approximation
    warmup_epochs: int = 0           # epochs of weight steps only, before the logits move (against collapse)
    weights: WeightsConfig = field(default_factory=WeightsConfig)
    arch: ArchConfig = field(default_factory=ArchConfig)
    cost: CostConfig = field(default_factory=CostConfig)
    derive: DeriveConfig = field(default_factory=DeriveConfig)
    relaxation: str = "softmax"      # softmax (DARTS) | dirichlet (DrNAS) | gumbel (GDAS: one sampled path per step)
    beta_decay: BetaDecayConfig = field(default_factory=BetaDecayConfig)
    dirichlet: DirichletConfig = field(default_factory=DirichletConfig)
    gumbel: GumbelConfig = field(default_factory=GumbelConfig)
    option_affine: bool = True       # batch norms inside relaxed options learn a scale and shift (false: as DARTS'
    #                                  and NAS-Bench-201's search networks, the architecture weight alone scales an op)
    partial_channels: int = 1        # K > 1: PC-DARTS, every relaxed edge computes its options on 1/K of its channels
    edge_norm: Optional[bool] = None  # PC-DARTS' edge normalisation (a softmax over each node's edges); null: on
    #                                   with partial_channels > 1
    train_derived: bool = True       # evaluate and train the derived network (false: record it unevaluated, write
    #                                  best/ untrained)
    derived_params: dict[str, Any] = field(default_factory=dict)  # model parameters of the derived network over
    #                                  space.params (its best/ files and training), e.g. {channels: 36, layers: 20}
    retrain: dict[str, Any] = field(default_factory=dict)  # trainer settings for the derived network's training
    #                                                          from scratch, on top of evaluator.final_overrides
    fixed: dict[str, Any] = field(default_factory=dict)  # value/depth (or layer) decision -> option
    unrelaxed: str = "error"         # value/depth decisions not in `fixed`: error | first
    memory_limit_mb: Optional[Any] = "auto"  # auto (the device's available memory) | a number | null (no check)
    device: str = "auto"             # auto | cpu | cuda | cuda:N
    cpu_threads: Optional[int] = 1   # torch threads on the CPU (null: torch's default)
    seed_offset: int = 0             # added to the run seed for the supernet's initialisation and data order
    progress: bool = True


def uses_edge_norm(cfg: DartsConfig) -> bool:
    return cfg.edge_norm if cfg.edge_norm is not None else cfg.partial_channels > 1


def darts_config(node: DictConfig | dict[str, Any] | None) -> DartsConfig:
    """Check the ``search`` config node: unknown keys, wrong types and impossible values fail before any work."""
    cfg = structured(DartsConfig, node, error=lambda key, message, hint: DartsConfigError(
        key, message, hint=hint or "see conf/search/darts.yaml"), label="search")
    _check(cfg)
    return cfg


def _check(cfg: DartsConfig) -> None:
    checks = [
        ("epochs", cfg.epochs >= 1, "epochs must be >= 1"),
        ("max_seconds", cfg.max_seconds is None or cfg.max_seconds > 0, "max_seconds must be > 0 (or null: no limit)"),
        ("batch_size", cfg.batch_size >= 1, "batch_size must be >= 1"),
        ("arch_fraction", 0 < cfg.arch_fraction < 1, "arch_fraction must be between 0 and 1 (DARTS: 0.5)"),
        ("order", cfg.order in (1, 2), "order must be 1 (first-order) or 2 (second-order)"),
        ("warmup_epochs", 0 <= cfg.warmup_epochs < cfg.epochs, "warmup_epochs must be in 0 .. epochs - 1"),
        ("unrelaxed", cfg.unrelaxed in ("error", "first"), "unrelaxed must be 'error' or 'first'"),
        ("cost.metric", cfg.cost.metric in ("macs", "params", "latency"),
         "cost.metric must be macs, params or latency"),
        ("cost.weight", cfg.cost.weight >= 0, "cost.weight must be >= 0"),
        ("cost.table", cfg.cost.metric != "latency" or bool(cfg.cost.table),
         "cost.metric=latency needs cost.table: a table built by `python -m compiler task=profile_ops`"),
        ("derive.collapse_threshold", 0 <= cfg.derive.collapse_threshold <= 1, "collapse_threshold must be in [0, 1]"),
        ("derive.top_inputs", cfg.derive.top_inputs is None or cfg.derive.top_inputs >= 1,
         "top_inputs must be >= 1 (or null: keep every edge)"),
        ("derive.method", cfg.derive.method in DERIVE_METHODS, f"method must be one of {', '.join(DERIVE_METHODS)}"),
        ("derive.score", cfg.derive.score in PERTURBATION_SCORES,
         f"score must be one of {', '.join(PERTURBATION_SCORES)}"),
        ("derive.order", cfg.derive.order in PERTURBATION_ORDERS,
         f"order must be one of {', '.join(PERTURBATION_ORDERS)}"),
        ("derive.batch_size", 2 <= cfg.derive.batch_size <= 1024, "batch_size must be in 2 .. 1024"),
        ("derive.discretize", cfg.derive.discretize in DISCRETIZE, f"discretize must be {' or '.join(DISCRETIZE)}"),
        ("derive.finetune_steps", 0 <= cfg.derive.finetune_steps <= FINETUNE_STEPS_MAX,
         f"finetune_steps must be in 0 .. {FINETUNE_STEPS_MAX:,}"),
        ("derive.finetune_steps", cfg.derive.finetune_steps == 0 or (cfg.derive.method == "perturbation"
                                                                     and cfg.derive.discretize == "progressive"),
         "finetune_steps fine-tunes the supernet between the decisions of derive.method=perturbation with "
         "derive.discretize=progressive (set both, or finetune_steps=0)"),
        ("derive.finetune_lr", cfg.derive.finetune_lr is None or cfg.derive.finetune_lr > 0,
         "finetune_lr must be > 0 (or null: weights.lr / 10)"),
        ("cpu_threads", cfg.cpu_threads is None or cfg.cpu_threads >= 1, "cpu_threads must be >= 1 (or null)"),
        ("arch.betas", len(cfg.arch.betas) == 2 and all(0 <= b < 1 for b in cfg.arch.betas),
         "arch.betas needs two numbers in [0, 1)"),
        ("weights.lr", cfg.weights.lr > 0, "weights.lr must be > 0"),
        ("arch.lr", cfg.arch.lr > 0, "arch.lr must be > 0"),
        ("weights.lr_min", 0 <= cfg.weights.lr_min <= cfg.weights.lr, "weights.lr_min must be in [0, weights.lr]"),
        ("weights.momentum", 0 <= cfg.weights.momentum < 1, "weights.momentum must be in [0, 1)"),
        ("weights.weight_decay", cfg.weights.weight_decay >= 0, "weights.weight_decay must be >= 0"),
        ("weights.grad_clip", cfg.weights.grad_clip is None or cfg.weights.grad_clip > 0,
         "weights.grad_clip must be > 0 (or null: no clipping)"),
        ("arch.weight_decay", cfg.arch.weight_decay >= 0, "arch.weight_decay must be >= 0"),
        ("cost.batch_size", cfg.cost.batch_size >= 1, "cost.batch_size must be >= 1"),
        ("seed_offset", 0 <= cfg.seed_offset <= SEED_MAX, "seed_offset must be in 0 .. 4294967295"),
        ("device", bool(DEVICE.match(cfg.device)), f"unknown device '{cfg.device}': auto, cpu, cuda or cuda:N"),
        ("relaxation", cfg.relaxation in RELAXATIONS, f"relaxation must be one of {', '.join(RELAXATIONS)}"),
        ("order", cfg.order == 1 or cfg.relaxation == "softmax",
         "second-order (unrolled) updates are implemented for relaxation=softmax only"),
        ("beta_decay.weight", cfg.beta_decay.weight >= 0, "beta_decay.weight must be >= 0 (0: off)"),
        ("dirichlet.kl_weight", cfg.dirichlet.kl_weight >= 0, "dirichlet.kl_weight must be >= 0"),
        ("gumbel.tau_min", 0 < cfg.gumbel.tau_min <= cfg.gumbel.tau_max,
         "the Gumbel temperatures need 0 < tau_min <= tau_max"),
        ("partial_channels", cfg.partial_channels >= 1, "partial_channels must be >= 1 (1: all channels)"),
    ]
    for key, ok, message in checks:
        if not ok:
            raise DartsConfigError(key, message, hint="see conf/search/darts.yaml")
    limit = cfg.memory_limit_mb
    if limit is not None and limit != "auto" and (isinstance(limit, bool) or not isinstance(limit, (int, float))
                                                   or limit <= 0):
        raise DartsConfigError("memory_limit_mb", f"memory_limit_mb must be auto, a number of MiB or null, not "
                               f"{limit!r}")
