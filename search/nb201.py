"""NAS-Bench-201 cell strings <-> genotypes.

The cell has 4 nodes; node j sums one op applied to every earlier node i. The benchmark writes it as
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` (one group per node 1..3, ``op~i`` = the op on edge i -> j). Our genotype
has six decisions in that string's order — (node1<-0), (node2<-0), (node2<-1), (node3<-0), (node3<-1), (node3<-2)
— each with the options of ``OPS`` in that order.
"""
from __future__ import annotations

from typing import Sequence

from compiler.ir.space import Decision, Genotype, Space

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))  # (to node, from node) in string order
SPACE = Space.of([Decision(f"node{j}<-{i}", OPS) for j, i in EDGES], "nb201")
_OP_INDEX = {op: k for k, op in enumerate(OPS)}


def genotype_to_string(genotype: Sequence[int]) -> str:
    genotype = SPACE.check_genotype(genotype)
    groups, k = [], 0
    for node in (1, 2, 3):
        groups.append("|" + "|".join(f"{OPS[genotype[k + i]]}~{i}" for i in range(node)) + "|")
        k += node
    return "+".join(groups)


def string_to_genotype(arch: str) -> Genotype:
    """Parse a benchmark string; a ValueError names what is wrong."""
    groups = arch.strip().split("+")
    if len(groups) != 3:
        raise ValueError(f"{arch!r} is not a NAS-Bench-201 cell: expected 3 '+'-separated node groups, "
                         f"e.g. |nor_conv_3x3~0|+|none~0|skip_connect~1|+|...~0|...~1|...~2|")
    values = []
    for node, group in enumerate(groups, start=1):
        if not (group.startswith("|") and group.endswith("|")):
            raise ValueError(f"{arch!r}: node {node}'s group {group!r} must start and end with '|'")
        edges = group[1:-1].split("|")
        if len(edges) != node:
            raise ValueError(f"{arch!r}: node {node} must have {node} input edge(s), found {len(edges)}")
        for source, edge in enumerate(edges):
            op, sep, origin = edge.partition("~")
            if not sep or origin != str(source):
                raise ValueError(f"{arch!r}: edge {edge!r} of node {node} must read OP~{source}")
            if op not in _OP_INDEX:
                raise ValueError(f"{arch!r}: unknown op {op!r}; the ops are {', '.join(OPS)}")
            values.append(_OP_INDEX[op])
    return tuple(values)


def option_labels_match(space: Space) -> bool:
    """True when ``space`` has the six NAS-Bench-201 edges with exactly the benchmark's ops as options."""
    decisions = list(space.decisions)
    return len(decisions) == len(EDGES) and all(set(map(str, d.options)) == set(OPS) for d in decisions)


def to_nb201_genotype(space: Space, genotype: Sequence[int]) -> Genotype:
    """Map a genotype of any space whose decisions are the NAS-Bench-201 edges (in string order) to ours, by
    option *label*, so a space may list the ops in another order."""
    if not option_labels_match(space):
        raise ValueError("this space is not the NAS-Bench-201 cell space: it needs 6 decisions (the edges in "
                         f"string order), each with the options {', '.join(OPS)}")
    genotype = space.check_genotype(genotype)
    return tuple(_OP_INDEX[str(d.options[v])] for d, v in zip(space.decisions, genotype))
