"""Data sets as uint8 tensors (digits, torchvision sets, image folders), device-side batching and augmentation.

Data sets are built from Hydra configs (``conf/dataset/*.yaml``): ``_target_`` names the loader, the other keys
are its arguments. ``load_dataset`` calls it.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from compiler.config_values import check_arguments, load_target
from search.data.augment import AugmentConfig
from search.data.base import DataError, DataSplits, Split
from search.data.loader import DeviceLoader
from search.structured import plain


def check_dataset_config(config: Any) -> Callable[..., DataSplits]:
    """The loader a ``dataset`` node names, its keys checked against the loader's arguments (names and types)."""
    args = plain(config)
    if not isinstance(args, Mapping) or not args.get("_target_"):
        raise DataError(f"the dataset config has no _target_: {args!r}", "dataset", hint="pick one with dataset=NAME")
    loader = load_target(args["_target_"], "dataset._target_")
    check_arguments(loader, {k: v for k, v in args.items() if k != "_target_"}, "dataset")
    return loader


def load_dataset(config: Mapping[str, Any]) -> DataSplits:
    """Call the config's ``_target_`` with its other keys (a DictConfig or a plain mapping), checked first."""
    loader = check_dataset_config(config)
    return loader(**{k: v for k, v in plain(config).items() if k != "_target_"})


__all__ = ["AugmentConfig", "DataError", "DataSplits", "DeviceLoader", "Split", "load_dataset"]
