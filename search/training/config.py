"""The trainer's configuration: typed dataclasses that the ``trainer`` Hydra group is checked against.

Every option is a general one; ``conf/trainer/airbench94.yaml`` shows how a published recipe is expressed with them.
Names of optimizers, schedules, precisions, TTA modes and initialisations are keys of registries in their modules.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from compiler import config_values
from search.data.augment import AugmentConfig


class ConfigError(config_values.ConfigError):
    """A trainer option that cannot work; printed as ``trainer.KEY: error: ...`` by the command line
    (``prefix`` names where the options came from, e.g. ``evaluator.final_overrides``)."""

    def __init__(self, key: str, message: str, hint: str | None = None, prefix: str = "trainer") -> None:
        super().__init__(config_values.join(prefix, key), message, hint=hint)


@dataclass
class BudgetConfig:
    epochs: Optional[float] = 10.0    # passes over the training split (fractions allowed: 9.9)
    steps: Optional[int] = None       # optimizer steps; when set, it wins over epochs (for brief search training)


@dataclass
class OptimizerConfig:
    name: str = "sgd"                 # sgd | adamw
    lr: float = 0.1
    momentum: float = 0.9             # sgd
    nesterov: bool = True             # sgd
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adamw
    eps: float = 1e-8                 # adamw
    weight_decay: float = 5e-4        # PyTorch's coefficient (SGD: added to the gradient; AdamW: decoupled)
    decay_norm_and_bias: bool = False  # false: norm-layer parameters and biases get no weight decay
    norm_lr_scale: float = 1.0        # learning-rate multiplier for norm-layer parameters; their decay per step
    #                                   (lr x weight_decay) is kept the same (airbench: 64)


@dataclass
class ScheduleConfig:
    name: str = "cosine"              # constant | cosine | linear | onecycle (a multiplier of optimizer.lr per step)
    warmup: float = 0.0               # warm-up length: a fraction of all steps if < 1, else a number of steps
    start_factor: float = 0.0         # multiplier at step 0 (the warm-up rises from it to 1)
    final_factor: float = 0.0         # multiplier at the last step


@dataclass
class EmaConfig:
    enabled: bool = False             # evaluate and save an exponential moving average of the weights
    decay: float = 0.999
    every: int = 1                    # update it every N steps (the decay is applied per update)


@dataclass
class LookaheadConfig:
    enabled: bool = False             # every N steps pull the weights to a slow average (and finish on it)
    every: int = 5
    decay: float = 0.95               # per-step decay; the average keeps decay**every x (progress ** power) ...
    power: float = 3.0                # ... so early on it follows the fast weights, late it averages (airbench)


@dataclass
class WhitenConfig:
    enabled: bool = False             # initialise the first conv as a frozen patch-whitening layer (airbench)
    images: int = 5000                # training images the patch covariance is estimated on
    eps: float = 5e-4                 # added to the eigenvalues
    bias_epochs: Optional[int] = None  # train the layer's bias this many epochs, then freeze it (null: always)


@dataclass
class TrainerConfig:
    device: str = "auto"              # auto (cuda when available) | cpu | cuda | cuda:1 ...
    seed: int = 0
    deterministic: bool = False       # deterministic kernels (slower on CUDA); seeding is always done
    cpu_threads: Any = "auto"         # torch intra-op threads while training on the CPU: auto (threads.py's rule
    #                                   from the model's MACs and the cores), a number, or null (leave as is)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    batch_size: int = 128
    eval_batch_size: int = 1000
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    label_smoothing: float = 0.0
    aux_weight: float = 0.4           # models with auxiliary outputs (`output aux = ...`): loss = main + aux_weight
    #                                   x each auxiliary output's loss, in training (DARTS: 0.4); 0 ignores them
    drop_path: float = 0.0            # DARTS' drop-path: the model's drop_path layers drop a sample's path with
    #                                   probability drop_path * epoch / epochs (0-based epoch; DARTS: 0.2); 0: off
    loss_reduction: str = "mean"      # mean | sum (sum: the lr is per example, as in airbench)
    grad_clip: Optional[float] = None  # clip the global gradient norm to this value
    precision: str = "auto"           # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16 | bf16-pure | fp16-pure
    channels_last: Optional[bool] = None  # null: on CUDA only
    compile: bool = False             # torch.compile the model for training
    compile_mode: Optional[str] = None  # passed to torch.compile (e.g. max-autotune)
    augment: Optional[AugmentConfig] = None  # null: the data set's own `augment` (no flips for digits, ...)
    init: str = "default"             # default | dirac (convs start as identity maps where shapes allow; airbench)
    train_norm_weights: bool = True   # false: norm-layer scales stay 1 (only their biases learn; airbench)
    whiten_stem: WhitenConfig = field(default_factory=WhitenConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    lookahead: LookaheadConfig = field(default_factory=LookaheadConfig)
    tta: str = "none"                 # test-time augmentation: none | flip | flip_translate
    eval_every: int = 1               # validation accuracy every N epochs (0: only at the end)
    keep_best: bool = False           # finish on the weights of the best validation epoch
    evaluate_test: bool = True        # measure test accuracy at the end (search evaluators turn it off)
    log_every: int = 20               # steps between progress updates and divergence checks
    untimed_warmup: int = 0           # training steps of a throwaway copy of the model before the timed run, so that
    #                                   one-off costs (cuDNN autotuning for new shapes, lazy CUDA set-up) are not
    #                                   timed as training: a search that times many new networks needs it on CUDA
    progress: Optional[bool] = None   # progress bar; null: when stderr is a terminal
    log_epochs: bool = True           # one log line per epoch (INFO; else DEBUG): a search's candidates turn it off,
    #                                   their validation curves are in history.jsonl (val_curve)
    distributed: str = "none"         # none | ddp: DistributedDataParallel over several processes (distributed.py),
    #                                   started by torchrun, or by the trainer itself (processes)
    processes: Optional[int] = None   # ddp without torchrun: processes to start (null: one per GPU)
    sync_batchnorm: bool = True       # ddp on CUDA: BatchNorm statistics over the global batch (SyncBatchNorm)

