"""Patch whitening for the first convolution (airbench): its filters become the eigenvectors of the covariance of
k x k training-image patches, scaled by 1/sqrt(eigenvalue), plus their negations; the layer is then frozen."""
from __future__ import annotations

import torch
from torch import nn

from search.training.config import ConfigError


def first_conv(model: nn.Module) -> nn.Conv2d:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module
    raise ConfigError("whiten_stem.enabled", "the model has no convolution to whiten")


def patch_covariance(images: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
    """Uncentred covariance [d, d] of all k x k patches (d = C k k) of normalised float images [N, C, H, W]."""
    d = images.shape[1] * kernel[0] * kernel[1]
    total = torch.zeros(d, d, dtype=torch.float64, device=images.device)
    count = 0
    for chunk in images.split(500):  # bounded memory: 500 images of 32x32 give ~0.5 M patches
        patches = chunk.unfold(2, kernel[0], 1).unfold(3, kernel[1], 1)      # n, C, H', W', kh, kw
        flat = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, d).double()
        total += flat.T @ flat
        count += len(flat)
    return total / count


@torch.no_grad()
def whiten_conv(conv: nn.Conv2d, images: torch.Tensor, eps: float) -> None:
    """Set ``conv``'s filters to whitening directions (largest eigenvalue first) and freeze its weight."""
    if conv.groups != 1:
        raise ConfigError("whiten_stem.enabled", f"the first conv has groups={conv.groups}; whitening needs 1")
    out, cin, kh, kw = conv.weight.shape
    d = cin * kh * kw
    if out > 2 * d:
        raise ConfigError("whiten_stem.enabled",
                          f"the first conv has {out} filters but {cin}x{kh}x{kw} patches give at most {2 * d} "
                          "whitening filters (eigenvectors and their negations)",
                          hint=f"give it at most {2 * d} output channels, e.g. conv({2 * d}, {kh}, padding=0)")
    eigenvalues, eigenvectors = torch.linalg.eigh(patch_covariance(images.float(), (kh, kw)))
    order = eigenvalues.argsort(descending=True)
    filters = (eigenvectors[:, order].T / torch.sqrt(eigenvalues[order] + eps)[:, None]).reshape(d, cin, kh, kw)
    conv.weight.copy_(torch.cat([filters, -filters])[:out].to(conv.weight.dtype))
    conv.weight.requires_grad_(False)
