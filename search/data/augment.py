"""Data augmentation on batches of tensors, on whatever device they live: flips, random translation, cutout.

Everything is vectorised over the batch and draws from one ``torch.Generator``, so a seed fixes every crop and
flip of a run. Images arrive normalised, so padding with zeros pads with the data set's mean colour.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from compiler.config_values import ConfigError


@dataclass
class AugmentConfig:
    flip: str = "none"           # none | random (each image, p=0.5) | alternate (a random half, all swapped each epoch)
    translate: int = 0           # shift by up to this many pixels: pad, then crop the original size at random
    pad_mode: str = "constant"   # constant (zeros: the mean colour) | reflect
    cutout: int = 0              # side of a random square set to zero (0: off)


def check_fits(config: AugmentConfig, image_shape: tuple[int, ...], key: str) -> None:
    """A shift must stay inside the image (reflect padding cannot pad by the image's side or more, and a larger
    constant pad only allocates zeros): ``key`` names the setting it came from (trainer.augment or dataset.augment)."""
    side = min(image_shape[-2:])
    if config.translate >= side:
        raise ConfigError(f"{key}.translate", f"must be smaller than the images' side ({side}), not {config.translate}",
                          hint="a shift of a few pixels, e.g. 2 for 32x32 images")


def random_translate(x: torch.Tensor, pad: int, mode: str, generator: torch.Generator) -> torch.Tensor:
    """Each image shifted by its own (dy, dx) in [-pad, pad]: one gather from the padded batch."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode=mode)
    shifts = torch.randint(0, 2 * pad + 1, (2, n, 1), generator=generator, device=x.device)
    rows = (shifts[0] + torch.arange(h, device=x.device)).view(n, 1, h, 1)
    cols = (shifts[1] + torch.arange(w, device=x.device)).view(n, 1, 1, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    channel = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[batch, channel, rows, cols]


def cutout(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Zero one ``size`` x ``size`` square per image, placed uniformly inside the image."""
    n, _, h, w = x.shape
    size = min(size, h, w)
    top = torch.randint(0, h - size + 1, (n, 1), generator=generator, device=x.device)
    left = torch.randint(0, w - size + 1, (n, 1), generator=generator, device=x.device)
    dy = torch.arange(h, device=x.device) - top
    dx = torch.arange(w, device=x.device) - left
    inside = ((dy >= 0) & (dy < size)).view(n, 1, h, 1) & ((dx >= 0) & (dx < size)).view(n, 1, 1, w)
    return x.masked_fill(inside, 0.0)


def flip_where(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.view(-1, 1, 1, 1), x.flip(-1), x)


class Augmenter:
    """Applies an AugmentConfig to batches of a data set of ``num_images`` images (indexed by ``index``)."""

    def __init__(self, config: AugmentConfig, num_images: int, generator: torch.Generator) -> None:
        if config.flip not in FLIPS:
            raise ValueError(f"unknown flip mode '{config.flip}'; choose one of {sorted(FLIPS)}")
        if config.pad_mode not in PAD_MODES:
            raise ValueError(f"unknown pad_mode '{config.pad_mode}'; choose one of {sorted(PAD_MODES)}")
        if config.translate < 0 or config.cutout < 0:
            raise ValueError("translate and cutout must be >= 0")
        self.config = config
        self.generator = generator
        # 'alternate' (airbench): a fixed random half of the images starts flipped, and every other epoch all are
        # flipped, so each image is seen both ways in two consecutive epochs.
        self.base_flip = (torch.rand(num_images, generator=generator, device=generator.device) < 0.5
                          if config.flip == "alternate" else None)

    def __call__(self, x: torch.Tensor, index: torch.Tensor, epoch: int) -> torch.Tensor:
        x = FLIPS[self.config.flip](self, x, index, epoch)
        if self.config.translate:
            x = random_translate(x, self.config.translate, PAD_MODES[self.config.pad_mode], self.generator)
        if self.config.cutout:
            x = cutout(x, self.config.cutout, self.generator)
        return x


def _no_flip(aug: Augmenter, x: torch.Tensor, index: torch.Tensor, epoch: int) -> torch.Tensor:
    return x


def _random_flip(aug: Augmenter, x: torch.Tensor, index: torch.Tensor, epoch: int) -> torch.Tensor:
    return flip_where(x, torch.rand(len(x), generator=aug.generator, device=x.device) < 0.5)


def _alternate_flip(aug: Augmenter, x: torch.Tensor, index: torch.Tensor, epoch: int) -> torch.Tensor:
    assert aug.base_flip is not None
    return flip_where(x, aug.base_flip[index] ^ bool(epoch % 2))


FLIPS: dict[str, Callable[[Augmenter, torch.Tensor, torch.Tensor, int], torch.Tensor]] = {
    "none": _no_flip, "random": _random_flip, "alternate": _alternate_flip,
}
PAD_MODES = {"constant": "constant", "zeros": "constant", "reflect": "reflect"}
