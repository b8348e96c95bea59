"""examples/spaces/airbench.arch: its default genotype is exactly examples/airbench94.arch, and its airbench95/96
genotypes are the reference's networks (Keller Jordan's airbench 0.1.8, lib_airbench95.py and lib_airbench96.py),
rebuilt here in plain torch from those files' definitions: same parameter count, same shapes in the same order and,
with the reference's weights copied in, the same outputs."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Mapping

import pytest
import torch
from torch import nn

import compiler
from compiler.space import Space, load_space_file

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SPACE = EXAMPLES / "spaces" / "airbench.arch"


@functools.cache
def space(**params: object) -> Space:
    return load_space_file(str(SPACE), **params)


def genotype(s: Space, **choices: str) -> tuple[int, ...]:
    """Options by decision name and option text; every other decision at its first option."""
    assert set(choices) <= {d.name for d in s.decisions}
    return tuple(d.options.index(choices[d.name]) if d.name in choices else 0 for d in s.decisions)


AIRBENCH95 = {"width1": "128", "width2": "384", "width3": "384"}
AIRBENCH96 = {"width1": "128", "width2": "384", "width3": "512", "convs1": "3", "convs2": "3", "convs3": "3"}


# ---- the reference networks, written from lib_airbench95.py / lib_airbench96.py ----------------------------------
class ConvGroup(nn.Module):
    """conv -> pool -> BN -> GELU -> conv -> BN -> GELU (95); with ``residual``, 96's third conv and the add."""

    def __init__(self, cin: int, cout: int, residual: bool) -> None:
        super().__init__()
        conv = functools.partial(nn.Conv2d, kernel_size=3, padding="same", bias=False)
        self.conv1, self.pool, self.norm1 = conv(cin, cout), nn.MaxPool2d(2), nn.BatchNorm2d(cout, eps=1e-12)
        self.conv2, self.norm2 = conv(cout, cout), nn.BatchNorm2d(cout, eps=1e-12)
        self.residual = residual
        if residual:
            self.conv3, self.norm3 = conv(cout, cout), nn.BatchNorm2d(cout, eps=1e-12)
        self.activ = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        if not self.residual:
            return self.activ(self.norm2(self.conv2(x)))
        y = self.norm3(self.conv3(self.activ(self.norm2(self.conv2(x)))))
        return self.activ(y + x)


def reference_net(widths: tuple[int, int, int], residual: bool) -> nn.Module:
    whiten = 2 * 3 * 2 ** 2
    w1, w2, w3 = widths
    return nn.Sequential(nn.Conv2d(3, whiten, 2, padding=0, bias=True), nn.GELU(), ConvGroup(whiten, w1, residual),
                         ConvGroup(w1, w2, residual), ConvGroup(w2, w3, residual), nn.MaxPool2d(3), nn.Flatten(),
                         nn.Linear(w3, 10, bias=False))


def shapes(model: nn.Module) -> list[tuple[int, ...]]:
    return [tuple(p.shape) for p in model.parameters()]


# ---- the default is airbench94 ------------------------------------------------------------------------------------
def test_default_genotype_is_airbench94() -> None:
    s = space()
    assert genotype(s) == (0,) * len(s.decisions)
    found, reference = s.compile(genotype(s)), compiler.compile_file(EXAMPLES / "airbench94.arch")
    assert found.summary["params"] == reference.summary["params"] == 1_972_792
    assert found.summary["macs"] == reference.summary["macs"]
    built, expected = found.build(), reference.build()
    assert [(n, tuple(p.shape)) for n, p in built.named_parameters()] == \
        [(n, tuple(p.shape)) for n, p in expected.named_parameters()]
    # the generated source is the same file, up to the model's name
    assert found.source.replace("Airbench", "Model").replace("'airbench'", "'model'") == \
        reference.source.replace("Airbench94", "Model").replace("'airbench94'", "'model'")


def test_decisions_cover_the_airbench_family() -> None:
    s = space()
    names = [d.name for d in s.decisions]
    assert names == ["whiten_kernel", "whiten_width", "activation", "width1", "kernel1", "convs1", "pool",
                     "width2", "kernel2", "convs2", "width3", "kernel3", "convs3", "final_pool"]
    assert s.size == 245_760
    assert s.describe(genotype(s, **AIRBENCH96))["convs3"] == "3"


# ---- airbench95 and airbench96 are in it ------------------------------------------------------------------------
@pytest.mark.parametrize("name, choices, widths, residual, params", [
    ("airbench95", AIRBENCH95, (128, 384, 384), False, 4_606_520),
    ("airbench96", AIRBENCH96, (128, 384, 512), True, 9_918_776),
])
def test_airbench95_and_96_layouts(name: str, choices: Mapping[str, str], widths: tuple[int, int, int],
                                   residual: bool, params: int) -> None:
    reference = reference_net(widths, residual).eval()
    count = sum(p.numel() for p in reference.parameters())
    assert count == params                                       # the figure in the space's header
    found = space().compile(genotype(space(), **choices))
    assert found.summary["params"] == count, name
    model = found.build().eval()
    assert shapes(model) == shapes(reference)
    # the same function: the reference's weights (BN statistics too), in order, give the same outputs
    torch.manual_seed(0)
    with torch.no_grad():
        for p in reference.parameters():
            p.copy_(torch.randn_like(p) * 0.05)
        for m in reference.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        model.load_state_dict(dict(zip(model.state_dict(), reference.state_dict().values())))
        x = torch.randn(2, 3, 32, 32)
        assert torch.allclose(model(x), reference(x) / 9, atol=1e-5, rtol=1e-4)   # airbench's logits scale 1/9


def test_airbench96_batchnorm_momentum_is_a_parameter() -> None:
    source = space(bn_momentum=0.1).compile(genotype(space(bn_momentum=0.1), **AIRBENCH96)).source
    assert "nn.BatchNorm2d(512, eps=1e-12)" in source and "momentum" not in source   # PyTorch's default, 0.1
    assert "momentum=0.4" in space().compile(genotype(space(), **AIRBENCH96)).source


# ---- every option compiles, also at the reduced resolution of the CPU experiment ----------------------------------
@pytest.mark.parametrize("size", [32, 16])
def test_every_option_compiles(size: int) -> None:
    s = space(size=size)
    s.validate(samples=4)
    smallest = s.compile(genotype(s, whiten_kernel="3", final_pool="avgpool(last)"))
    assert smallest.summary["output_shape"] == [10]
