"""CIFAR-10/100, MNIST and Fashion-MNIST through torchvision, read from ``root``; downloaded there only when
``download`` is true (the configs say false: nothing is fetched unless you allow it)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torchvision import datasets

from search.data.base import DataError, DataSplits, Split, make_splits
from search.data.cache import cache_root


@dataclass(frozen=True)
class Source:
    cls: Callable[..., Any]     # the torchvision data set class
    folder: str                 # where its files must be, relative to root
    size: str                   # what a download fetches


SOURCES: dict[str, Source] = {
    "cifar10": Source(datasets.CIFAR10, "cifar-10-batches-py/", "about 170 MB"),
    "cifar100": Source(datasets.CIFAR100, "cifar-100-python/", "about 170 MB"),
    "mnist": Source(datasets.MNIST, "MNIST/raw/", "about 12 MB"),
    "fashion_mnist": Source(datasets.FashionMNIST, "FashionMNIST/raw/", "about 30 MB"),
}


def _to_split(ds: Any) -> Split:
    """torchvision keeps CIFAR as numpy [N, H, W, C] and MNIST as a tensor [N, H, W]; both become [N, C, H, W]."""
    images = torch.as_tensor(np.asarray(ds.data), dtype=torch.uint8)
    images = images.unsqueeze(1) if images.dim() == 3 else images.permute(0, 3, 1, 2)
    return Split(images.contiguous(), torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64))


def _open(name: str, source: Source, root: Path, train: bool, download: bool) -> Any:
    where = root.resolve() / source.folder
    try:
        return source.cls(str(root), train=train, download=download)
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted" / "Error downloading"
        if download:
            raise DataError(f"the {name} download failed (offline?)", where,
                            hint=f"copy torchvision's {name} files into this folder, or set dataset.root to where "
                                 "they are") from err
        raise DataError(f"the {name} files are not here, and nothing is downloaded unless you allow it", where,
                        hint=f"add dataset.download=true to fetch them into this folder ({source.size}), or set "
                             f"dataset.root to a folder that holds {source.folder}") from err
    except OSError as err:  # urllib errors while downloading
        raise DataError(f"could not download {name} into this folder: {err}", where,
                        hint="offline? copy the files there by hand, or set dataset.root to where they are") from err


def load_torchvision(name: str, root: str | Path | None = None, download: bool = False, val_size: float | int = 0.1,
                     val_seed: int = 0, augment: Mapping[str, Any] | None = None) -> DataSplits:
    if name not in SOURCES:
        raise DataError(f"unknown torchvision data set '{name}'", "dataset.name", hint=f"one of {sorted(SOURCES)}")
    source = SOURCES[name]
    root = Path(root).expanduser() if root else cache_root() / "torchvision"
    train = _open(name, source, root, True, download)
    test = _open(name, source, root, False, download)
    return make_splits(name, _to_split(train), _to_split(test), list(train.classes), val_size=val_size,
                       val_seed=val_seed, augment=augment)
