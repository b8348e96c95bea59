"""scikit-learn's bundled 8x8 handwritten digits (1,797 grey images, 10 classes): the embedded default data set."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from compiler.config_values import ConfigError, check_seed
from search.data.base import DataSplits, Split, check_split_size, make_splits


def load_digits_splits(name: str = "digits", test_size: float | int = 0.2, split_seed: int = 0,
                       val_size: float | int = 0.1, val_seed: int = 0,
                       augment: Mapping[str, Any] | None = None) -> DataSplits:
    """A fixed stratified train/test split (``test_size``, ``split_seed``), then validation carved from train.

    The pixel values 0..16 are scaled to 0..255 so every data set is uint8 in the same range.
    """
    check_split_size(test_size, "dataset.test_size")
    check_seed(split_seed, "dataset.split_seed")
    bunch = load_digits()
    images = torch.from_numpy(np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    try:
        train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=test_size, random_state=split_seed,
                                               stratify=bunch.target)
    except ValueError as err:  # scikit-learn: too many or too few test images for a stratified split
        raise ConfigError("dataset.test_size", str(err),
                          hint=f"a fraction like 0.2 of the {len(labels)} images") from err
    everything = Split(images, labels)
    return make_splits(name, everything.subset(np.sort(train_idx)), everything.subset(np.sort(test_idx)),
                       [str(c) for c in bunch.target_names], val_size=val_size, val_seed=val_seed, augment=augment)
