"""Data sets as uint8 tensors (digits, torchvision sets, image folders), device-side batching and augmentation.

Data sets are built from Hydra configs (``conf/dataset/*.yaml``): ``_target_`` names the loader, the other keys
are its arguments. ``load_dataset`` calls it.
"""
from __future__ import annotations

import inspect
from typing import Any, Mapping

from search.data.augment import AugmentConfig
from search.data.base import DataError, DataSplits, Split
from search.data.loader import DeviceLoader


def load_dataset(config: Mapping[str, Any]) -> DataSplits:
    """Call the config's ``_target_`` with its other keys (a DictConfig or a plain mapping)."""
    from hydra.utils import get_method
    from omegaconf import DictConfig, OmegaConf

    args = dict(OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else config)
    target = args.pop("_target_", None)
    if not target:
        raise DataError("the dataset config has no _target_", "dataset", hint="pick one with dataset=NAME")
    loader = get_method(target)
    accepted = inspect.signature(loader).parameters
    unknown = sorted(set(args) - set(accepted))
    if unknown:
        raise DataError(f"'{target}' takes no argument(s) {unknown}", "dataset",
                        hint=f"its arguments: {', '.join(accepted)}")
    return loader(**args)


__all__ = ["AugmentConfig", "DataError", "DataSplits", "DeviceLoader", "Split", "load_dataset"]
