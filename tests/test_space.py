"""Search spaces in the language: decisions, concretize, labels, input/depth/value choices, static checks."""
from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from compiler import ArchError, compile_source, parse_graph
from compiler.ir.space import Decision, Space
from compiler.space import load_space, load_space_file

ROOT = Path(__file__).resolve().parents[1]

SPACE = """
block unit(c) {
    input x
    output x -> [conv(c, 3) | sepconv(c, 5) | identity] as op -> relu
}
model s(num_classes = 10) {
    input x: [3, 8, 8]
    let w = [8 | 16]
    x = x -> conv(w, 1) -> unit(w) * [1 | 2 | 3]
    y = x -> unit(w) as side
    z = ([x | y], y) -> add
    output z -> global_avgpool -> flatten -> linear(num_classes)
}
"""


def test_decisions_are_ordered_named_and_typed() -> None:
    space = load_space(SPACE, "s.arch")
    assert [(d.name, d.kind, d.options) for d in space.decisions] == [
        ("s.w", "value", ("8", "16")),
        ("op", "layer", ("conv(c, 3)", "sepconv(c, 5)", "identity")),
        ("s.x", "depth", ("1", "2", "3")),
        ("side.op", "layer", ("conv(c, 3)", "sepconv(c, 5)", "identity")),
        ("s.z", "input", ("x", "y")),
    ]
    assert space.size == 2 * 3 * 3 * 3 * 2


def test_concretize_takes_each_choice() -> None:
    space = load_space(SPACE, "s.arch")
    g = space.concretize((1, 0, 2, 1, 1))
    ops = [n.op for n in g.nodes]
    assert ops.count("conv") == 1 + 3  # stem conv, 3 repeated units with conv (shared decision 'op')
    assert ops.count("sepconv") == 1   # the labelled instance decides on its own
    assert g.node("conv1").attrs["channels"] == 16
    add = next(n for n in g.nodes if n.op == "add")
    assert add.inputs[0] == add.inputs[1]  # input choice took y for both
    # The concrete graph is an ordinary model: printable, and the print parses back to it.
    result = space.compile((1, 0, 2, 1, 1))
    assert parse_graph(result.arch) == result.graph
    assert compile_source(result.arch).summary["params"] == result.summary["params"]


def test_every_genotype_of_a_small_space_compiles() -> None:
    space = load_space(SPACE, "s.arch")
    params = {space.compile(g).summary["params"] for g in space.genotypes()}
    assert len(params) > 20


def test_bad_genotypes_are_refused() -> None:
    space = load_space(SPACE, "s.arch")
    with pytest.raises(ValueError, match="5 decisions"):
        space.concretize((0, 0))
    with pytest.raises(ValueError, match="has 3 options"):
        space.concretize((0, 0, 3, 0, 0))


def test_same_label_ties_decisions_and_conflicts_are_errors() -> None:
    tied = load_space("model t() { input x: [3, 8, 8]\n a = x -> conv([4 | 8] as w, 1)\n"
                      " output a -> conv([4 | 8] as w, 1) }", "t.arch")
    assert [d.name for d in tied.decisions] == ["w"]
    with pytest.raises(ArchError, match="both named 'w' but offer different options"):
        load_space("model t() { input x: [3, 8, 8]\n a = x -> conv([4 | 8] as w, 1)\n"
                   " output a -> conv([4 | 16] as w, 1) }", "t.arch")


def test_static_check_names_the_inconsistent_option() -> None:
    space = load_space("model t() { input x: [3, 8, 8]\n a = x -> conv([3 | 4], 1)\n"
                       " output (a, x) -> add }", "t.arch")
    with pytest.raises(ArchError) as info:
        space.validate()
    assert "t.a=4" in str(info.value) and info.value.span.line == 3


def test_nb201_space_matches_the_benchmark() -> None:
    space = load_space_file(str(ROOT / "examples" / "spaces" / "nb201.arch"))
    assert [d.name for d in space.decisions] == ["edge_1_0.op", "edge_2_0.op", "edge_2_1.op", "edge_3_0.op",
                                                 "edge_3_1.op", "edge_3_2.op"]
    assert space.size == 15_625
    # The all-3x3 cell gives the benchmark's largest network: 1,531,546 parameters at C=16 on CIFAR-10
    # (NAS-Bench-201 reports 1.53 M for it).
    assert space.compile((3,) * 6).summary["params"] == 1_531_546
    rng = np.random.default_rng(0)
    for _ in range(3):
        model = space.compile(space.random_genotype(rng)).build()
        import torch
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_choice_sites_have_stable_ids_and_the_table_is_keyed_by_them() -> None:
    first, second = load_space(SPACE, "s.arch"), load_space(SPACE, "s.arch")
    assert dict(first.sites) == dict(second.sites)   # the same text: the same table, whatever the objects
    # one entry per (namespace, site): the labelled instance `side` has its own entry for the `op` site
    # sites in source order: unit's op 0, w 1, the depth 2, the input choice 3
    assert dict(first.sites) == {("", 1): 0, ("", 0): 1, ("", 2): 2, ("side.", 0): 3, ("", 3): 4}
    assert first.decision_at("side.", 0) == 3 and first.decision_at("", 0) == 1


def test_a_space_pickles_and_its_copy_compiles_the_same_code() -> None:
    space = load_space_file(str(ROOT / "examples" / "spaces" / "nb201.arch"), cells=1, channels=4)
    genotype = (3, 1, 0, 2, 4, 1)
    expected = space.compile(genotype).source
    copy = pickle.loads(pickle.dumps(space))
    assert copy is not space and copy.decisions == space.decisions and copy._compiled == {}
    assert copy.compile(genotype).source == expected
    assert copy.describe(genotype) == space.describe(genotype)


def test_a_space_with_a_users_op_unpickles_where_the_op_module_is_imported(tmp_path: Path) -> None:
    import examples.custom_ops  # noqa: F401  (registers channel_shuffle)
    space = load_space("model m() { input x: [4, 4, 4]\n output x -> [channel_shuffle(2) | identity] -> relu }",
                       "u.arch")
    (tmp_path / "space.pkl").write_bytes(pickle.dumps(space))
    code = ("import pickle, sys, examples.custom_ops; space = pickle.loads(open(sys.argv[1], 'rb').read()); "
            "print(space.compile((0,)).source)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "space.pkl")], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    assert proc.stdout == space.compile((0,)).source + "\n" and "unflatten(1, (2, -1))" in proc.stdout


def test_a_bare_space_has_the_genotype_helpers_but_nothing_to_compile() -> None:
    space = Space.of([Decision("op", ("conv", "skip", "none")), Decision("w", (8, 16), "value")], "table")
    assert space.size == 6 and space.cardinalities == (3, 2) and space.decisions[1].options == ("8", "16")
    assert list(space.genotypes()) == [space.genotype_at(i) for i in range(6)]
    assert [space.index_of(g) for g in space.genotypes()] == list(range(6))
    assert space.neighbours((0, 1)) == [(1, 1), (2, 1), (0, 0)]
    assert space.describe((2, 0)) == {"op": "none", "w": "8"} and space.signature() == [["op", 3], ["w", 2]]
    rng = np.random.default_rng(0)
    assert all(space.mutate((0, 0), rng) in space.neighbours((0, 0)) for _ in range(20))
    with pytest.raises(ValueError, match=r"decision 'w' has 2 options, got index 2"):
        space.check_genotype((0, 2))
    with pytest.raises(TypeError, match="has decisions only"):
        space.compile((0, 0))
    assert pickle.loads(pickle.dumps(space)).describe((1, 1)) == {"op": "skip", "w": "16"}
