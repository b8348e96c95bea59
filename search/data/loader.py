"""Batches straight from uint8 tensors held on the training device: no worker processes, no per-epoch decoding.

Each batch is gathered by index, converted to float and normalised on the device, augmented there, and handed
over in the memory format and dtype the model wants.
"""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch

from search.data.augment import AugmentConfig, Augmenter
from search.data.base import Split


class DeviceLoader:
    def __init__(self, split: Split, batch_size: int, device: torch.device | str, mean: Sequence[float],
                 std: Sequence[float], *, augment: AugmentConfig | None = None, shuffle: bool = False,
                 drop_last: bool = False, seed: int = 0, channels_last: bool = False,
                 dtype: torch.dtype = torch.float32, shard: tuple[int, int] = (0, 1)) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size}")
        # (rank, processes) of a distributed training: every rank draws the same global batch (same seed: the same
        # order and augmentation) and keeps its slice, as a DistributedSampler would hand it out
        self.rank, self.processes = shard
        self.device = torch.device(device)
        self.images = split.images.to(self.device, non_blocking=True)
        self.labels = split.labels.to(self.device, non_blocking=True)
        self.batch_size = min(batch_size, len(split)) if drop_last else batch_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.channels_last, self.dtype = channels_last, dtype
        # normalise as (x - 255 mean) / (255 std) in one fused multiply-add
        scale = torch.tensor([1.0 / (255.0 * s) for s in std], device=self.device).view(1, -1, 1, 1)
        self.scale, self.shift = scale, -torch.tensor(mean, device=self.device).view(1, -1, 1, 1) * 255.0 * scale
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.augmenter = Augmenter(augment, len(split), self.generator) if augment else None
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, images.float(), self.scale)

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dtype)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        order = (torch.randperm(n, generator=self.generator, device=self.device) if self.shuffle
                 else torch.arange(n, device=self.device))
        for i in range(len(self)):
            index = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.normalize(self.images[index])
            if self.augmenter is not None:
                x = self.augmenter(x, index, self.epoch)
            y = self.labels[index]
            if self.processes > 1:
                part = len(index) // self.processes
                x, y = x[self.rank * part:(self.rank + 1) * part], y[self.rank * part:(self.rank + 1) * part]
            yield self.finish(x), y
        self.epoch += 1
