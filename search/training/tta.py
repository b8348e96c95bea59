"""Evaluation, optionally with test-time augmentation (the average of the logits over flipped/shifted copies)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from search.data.loader import DeviceLoader
from search.training.precision import Precision


def _plain(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)


def _flip(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (model(x) + model(x.flip(-1)))


def _flip_translate(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Mirror, plus the mirrored copies shifted by one pixel up-left and down-right (airbench's level 2)."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    shifted = 0.5 * (_flip(model, padded[..., :h, :w]) + _flip(model, padded[..., 2:, 2:]))
    return 0.5 * _flip(model, x) + 0.5 * shifted


TTA: dict[str, Callable[[nn.Module, torch.Tensor], torch.Tensor]] = {
    "none": _plain, "flip": _flip, "flip_translate": _flip_translate,
}


@torch.no_grad()
def evaluate(model: nn.Module, loader: DeviceLoader, precision: Precision, tta: str = "none") -> float:
    """Top-1 accuracy of ``model`` (in eval mode) on every image of ``loader``."""
    if len(loader.labels) == 0:
        return float("nan")
    infer = TTA[tta]
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=loader.device)
    for x, y in loader:
        with precision.context(loader.device):
            correct += (infer(model, x).argmax(1) == y).sum()
    model.train(was_training)
    return correct.item() / len(loader.labels)
