"""Data sets as uint8 tensors: a Split is images [N, C, H, W] + labels [N]; DataSplits holds train/val/test.

Images stay uint8 until a batch is drawn (see ``loader.py``), so a whole data set fits on the device and no image is
decoded twice. The validation split is always carved from the training data, never from the test set.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from compiler.config_values import ConfigError, check_seed, check_value
from compiler.errors import ArchError, Span


class DataError(ArchError):
    """A data set that cannot be loaded as configured (missing files, bad layout). Printed as ``PATH: error: ...``.

    It is an ArchError so the command line reports it like every other user mistake (one line, exit status 2).
    """

    def __init__(self, message: str, where: str | Path = "dataset", hint: str | None = None) -> None:
        super().__init__(message, Span(str(where), 0, 0), hint=hint)


@dataclass(frozen=True)
class Split:
    images: torch.Tensor   # uint8 [N, C, H, W]
    labels: torch.Tensor   # int64 [N]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {self.images.dtype} {list(self.images.shape)}")
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"{len(self.images)} images but labels of shape {list(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: torch.Tensor | np.ndarray | Sequence[int]) -> "Split":
        # the index on the images' device: a split kept on the GPU (evaluators hold decoded data there) stays there
        if getattr(indices, "dtype", None) in (torch.bool, np.bool_):   # would read as indices 0 and 1
            raise TypeError("subset takes indices, not a boolean mask (use mask.nonzero())")
        if isinstance(indices, torch.Tensor):
            index = indices.to(self.images.device, torch.int64)
        else:
            index = torch.as_tensor(np.asarray(indices, dtype=np.int64), device=self.images.device)
        return Split(self.images.index_select(0, index), self.labels.index_select(0, index))

    def to(self, device: torch.device | str) -> "Split":
        return Split(self.images.to(device), self.labels.to(device))


@dataclass(frozen=True)
class DataSplits:
    name: str
    train: Split
    val: Split
    test: Split
    classes: tuple[str, ...]
    mean: tuple[float, ...]            # per-channel mean of the training images, in [0, 1]
    std: tuple[float, ...]             # per-channel standard deviation, in [0, 1]
    augment: Mapping[str, Any] = field(default_factory=dict)  # the augmentation this data set suits (trainer default)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to(self, device: torch.device | str) -> "DataSplits":
        """The same data with its tensors on ``device``. A process that trains many networks keeps them there once,
        so every DeviceLoader finds its images in place instead of copying the data set to the device again."""
        return dataclasses.replace(self, train=self.train.to(device), val=self.val.to(device),
                                   test=self.test.to(device))

    def describe(self) -> str:
        c, h, w = self.input_shape
        return (f"{self.name}: {len(self.train)} train / {len(self.val)} val / {len(self.test)} test images, "
                f"{c}x{h}x{w}, {self.num_classes} classes")


STATS_IMAGES = 10_000   # normalisation statistics come from at most this many (evenly strided) training images


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] of uint8 images, from a 256-bin histogram per channel (fast and exact);
    large sets use an even stride of STATS_IMAGES images, which moves the estimates by well under 1 %."""
    sample = images[::max(1, len(images) // STATS_IMAGES)]
    values = torch.arange(256, dtype=torch.float64) / 255
    means, stds = [], []
    for c in range(images.shape[1]):
        hist = torch.bincount(sample[:, c].reshape(-1), minlength=256).to(torch.float64)
        p = hist / hist.sum()
        mean = float((p * values).sum())
        means.append(mean)
        stds.append(max(float((p * (values - mean) ** 2).sum()) ** 0.5, 1e-6))
    return tuple(means), tuple(stds)


def check_split_size(size: Any, key: str, zero: bool = False) -> None:
    """A split size: a fraction in (0, 1) of the images, or a whole number of them (0 only where ``zero``)."""
    check_value(size, float, key, minimum=0, hint="a fraction like 0.1, or a number of images")
    if (size == 0 and not zero) or (size >= 1 and size != int(size)):
        raise ConfigError(key, f"must be a fraction in (0, 1) or a whole number of images{', or 0' if zero else ''}"
                          f", not {size!r}")


def carve_validation(train: Split, val_size: float | int, seed: int) -> tuple[Split, Split]:
    """Split ``train`` into (train, val), stratified by label with a fixed seed.

    ``val_size`` is a fraction of the training images when below 1, else a number of images; 0 gives an empty
    validation split (train on everything, as benchmarks that report test accuracy do).
    """
    n = len(train)
    count = int(round(val_size * n)) if 0 < val_size < 1 else int(val_size)
    if count == 0:
        return train, Split(train.images[:0], train.labels[:0])
    if not 0 < count < n:
        raise DataError(f"val_size={val_size} leaves no training images out of {n}", hint="use a fraction like 0.1")
    labels = train.labels.cpu().numpy()   # the labels may be on the GPU (an evaluator's data, given to DARTS)
    classes = len(np.unique(labels))   # a stratified split needs each class twice and both sides to hold them all
    stratify = labels if np.bincount(labels).min() >= 2 and classes <= count <= n - classes else None
    keep, held = train_test_split(np.arange(n), test_size=count, random_state=seed, stratify=stratify)
    return train.subset(np.sort(keep)), train.subset(np.sort(held))


def check_augment(augment: Mapping[str, Any] | None) -> dict[str, Any]:
    """The data set's recommended augmentation, checked against AugmentConfig (keys, types, mode names)."""
    from search.data.augment import FLIPS, PAD_MODES, AugmentConfig
    from search.structured import structured

    checked = structured(AugmentConfig, augment, label="dataset.augment",
                         error=lambda key, message, hint: ConfigError(f"dataset.augment.{key}", message, hint))
    for key, value, allowed in (("flip", checked.flip, FLIPS), ("pad_mode", checked.pad_mode, PAD_MODES)):
        if value not in allowed:
            raise DataError(f"unknown {key} '{value}'", f"dataset.augment.{key}", hint=f"one of {', '.join(allowed)}")
    for key, pixels in (("translate", checked.translate), ("cutout", checked.cutout)):
        check_value(pixels, int, f"dataset.augment.{key}", minimum=0)
    return dict(augment or {})


def make_splits(name: str, train: Split, test: Split, classes: Sequence[str], *, val_size: float | int,
                val_seed: int, augment: Mapping[str, Any] | None = None) -> DataSplits:
    """Carve validation from ``train`` and compute the normalisation statistics on what remains."""
    check_split_size(val_size, "dataset.val_size", zero=True)
    check_seed(val_seed, "dataset.val_seed")
    augment = check_augment(augment)
    train, val = carve_validation(train, val_size, val_seed)
    mean, std = channel_stats(train.images)
    return DataSplits(name, train, val, test, tuple(classes), mean, std, augment)
