"""The trainer used by ``task=train`` and by search evaluators: ``train(model, data, config) -> TrainResult``."""
from search.training.checks import trainer_config, trainer_with_overrides
from search.training.config import ConfigError, TrainerConfig
from search.training.trainer import DIVERGED, OK, OOM, TrainResult, Trainer, resolve_device, seed_everything, train

__all__ = ["ConfigError", "DIVERGED", "OK", "OOM", "TrainResult", "Trainer", "TrainerConfig", "resolve_device",
           "seed_everything", "train", "trainer_config", "trainer_with_overrides"]
