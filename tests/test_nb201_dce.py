"""Consistent dead-code elimination on NAS-Bench-201, checked against a reference model of the benchmark.

A cell edge is *dead* when the node it feeds cannot reach the cell's output (every path from that node to node 3
passes through a ``none`` edge): its value changes nothing, so the compiler drops it. Dropping it must not depend
on the rest of the cell, so every cell must count exactly the parameters of the same cell with its dead edges
written as ``none``. The reference is NAS-Bench-201's own network (``TinyNetwork`` of D-X-Y/AutoDL-Projects, with
``InferCell`` and ``ResNetBasicblock``), written again here from its description: it builds every edge, dead or
not, so it equals us on the cell with its dead edges set to ``none``.
"""
from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Sequence

import pytest
from torch import nn

from compiler.api import pipeline
from compiler.space import Space, load_space_file
from search.nb201 import EDGES, OPS, genotype_to_string, string_to_genotype

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT.parent / "shared" / "data" / "nb201-cifar10.csv"
NONE = OPS.index("none")
ISSUE_CELL = "|avg_pool_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|avg_pool_3x3~0|avg_pool_3x3~1|none~2|"


def dead_edges_to_none(genotype: Sequence[int]) -> tuple[int, ...]:
    """The cell with every edge into a node that cannot reach node 3 replaced by ``none``."""
    op = {edge: genotype[k] for k, edge in enumerate(EDGES)}            # (to, from) -> op index
    reaches = {3: True}
    for node in (2, 1):
        reaches[node] = any(op[(to, node)] != NONE and reaches[to] for to in range(node + 1, 4))
    return tuple(NONE if not reaches[to] else op[(to, source)] for to, source in EDGES)


def costs(space: Space, genotype: Sequence[int]) -> tuple[int, int]:
    graph = pipeline().run(space.concretize(genotype))
    return int(graph.meta["params"]), int(graph.meta["macs"])


# ---- the reference network (NAS-Bench-201's TinyNetwork: C=16, N=5 cells per stage) --------------------------
def _relu_conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Module:
    return nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out))


def _edge(op: str, channels: int) -> nn.Module:
    """One edge of a cell; `none` (zeros) and `skip_connect` (identity, equal channels) have no weights."""
    if op == "nor_conv_1x1":
        return _relu_conv_bn(channels, channels, 1)
    if op == "nor_conv_3x3":
        return _relu_conv_bn(channels, channels, 3)
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, 1, 1, count_include_pad=False)
    assert op in ("none", "skip_connect"), op
    return nn.Identity()


class _ResidualReduction(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = _relu_conv_bn(c_in, c_out, 3, 2)
        self.conv_b = _relu_conv_bn(c_out, c_out, 3)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))


def reference_network(arch: str, channels: int = 16, cells: int = 5, classes: int = 10) -> nn.Module:
    """Every module the reference builds (all six edges of every cell, dead or not)."""
    ops = [op for group in arch.split("+") for op in (e.split("~")[0] for e in group.strip("|").split("|"))]
    layers: list[nn.Module] = [nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)]
    c = channels
    for stage in range(3):
        if stage:
            layers.append(_ResidualReduction(c, 2 * c))
            c *= 2
        layers += [nn.ModuleList(_edge(op, c) for op in ops) for _ in range(cells)]
    layers += [nn.BatchNorm2d(c), nn.Linear(c, classes)]
    return nn.ModuleList(layers)


def reference_params(arch: str) -> int:
    return sum(p.numel() for p in reference_network(arch).parameters())


@pytest.fixture(scope="module")
def nb201() -> Space:
    return load_space_file(str(ROOT / "examples" / "spaces" / "nb201.arch"))


def test_dead_edges_are_found() -> None:
    # node 2 feeds node 3 only through `none`: both its input edges are dead
    assert genotype_to_string(dead_edges_to_none(string_to_genotype(ISSUE_CELL))) == \
        "|avg_pool_3x3~0|+|none~0|none~1|+|avg_pool_3x3~0|avg_pool_3x3~1|none~2|"
    # node 1 feeds only node 2, which feeds node 3 through `none`: both of node 1's and node 2's inputs are dead
    assert genotype_to_string(dead_edges_to_none(string_to_genotype(
        "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|nor_conv_3x3~0|none~1|none~2|"))) == \
        "|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|"


def test_the_issue_cell_drops_its_dead_convs_like_the_cell_without_them(nb201: Space) -> None:
    """The cell of the issue kept its dead 1x1 convs (101,306 parameters) while the same cell with a `none`
    there counted 73,306: `simplify` threw away its rewritten sums when nothing was forwarded."""
    genotype = string_to_genotype(ISSUE_CELL)
    pruned = dead_edges_to_none(genotype)
    assert costs(nb201, genotype) == costs(nb201, pruned)
    assert costs(nb201, genotype)[0] == 73_306
    # the reference builds dead edges too: it counts the 1x1 convs in the issue's string, not once they are none
    assert reference_params(ISSUE_CELL) == 101_306
    assert reference_params(genotype_to_string(pruned)) == 73_306
    assert "conv" not in [n.op for n in nb201.compile(genotype).graph.nodes if n.name.startswith("cell")]


@pytest.mark.parametrize("arch", [
    ISSUE_CELL,
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
    "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|nor_conv_3x3~0|none~1|none~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    "|nor_conv_1x1~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|none~0|none~1|none~2|",
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
])
def test_parameters_equal_the_reference_with_dead_edges_set_to_none(nb201: Space, arch: str) -> None:
    genotype = string_to_genotype(arch)
    pruned = genotype_to_string(dead_edges_to_none(genotype))
    assert costs(nb201, genotype)[0] == reference_params(pruned)


def _check_consistent(space: Space, genotypes: Sequence[tuple[int, ...]]) -> int:
    """Assert params and MACs of each cell equal those with its dead edges set to none; return how many differ
    from their pruned form as written (cells with dead edges)."""
    with_dead = 0
    for genotype in genotypes:
        pruned = dead_edges_to_none(genotype)
        if pruned != genotype:
            with_dead += 1
            assert costs(space, genotype) == costs(space, pruned), genotype_to_string(genotype)
    return with_dead


def test_the_space_holds_exactly_the_benchmark_cells(nb201: Space) -> None:
    """So the checks below, which enumerate the space, cover every cell of the benchmark's table."""
    with TABLE.open() as f:
        table = {string_to_genotype(row["arch"]) for row in csv.DictReader(f)}
    assert table == set(nb201.genotypes()) and len(table) == 15_625


def test_a_sample_of_the_benchmark_is_consistent(nb201: Space) -> None:
    genotypes = random.Random(0).sample(list(nb201.genotypes()), 200)
    assert _check_consistent(nb201, genotypes) > 20


@pytest.mark.slow
def test_every_benchmark_cell_is_consistent(nb201: Space) -> None:
    assert _check_consistent(nb201, list(nb201.genotypes())) > 1000
