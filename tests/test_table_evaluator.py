from pathlib import Path

import pytest

from compiler.errors import ArchError
from search import nb201
from search.evaluators.table import TableEvaluator, load_table
from compiler.ir.space import Decision, Space

NB201_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201-cifar10.csv"
EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def test_string_genotype_round_trip_over_the_whole_space():
    strings = {nb201.genotype_to_string(g) for g in nb201.SPACE.genotypes()}
    assert len(strings) == 15625
    for g in [(0,) * 6, (4,) * 6, (3, 3, 4, 1, 3, 1)]:
        assert nb201.string_to_genotype(nb201.genotype_to_string(g)) == g
    assert nb201.string_to_genotype(EXAMPLE) == (3, 3, 4, 1, 3, 1)
    assert nb201.genotype_to_string((3, 3, 4, 1, 3, 1)) == EXAMPLE


@pytest.mark.parametrize("bad, message", [
    ("|nor_conv_3x3~0|+|none~0|none~1|", "3 '\\+'-separated"),
    ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op 'conv'"),
    ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "must read OP~0"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2 must have 2"),
])
def test_bad_strings_are_explained(bad, message):
    with pytest.raises(ValueError, match=message):
        nb201.string_to_genotype(bad)


def test_lookup_on_the_benchmark_table_gives_fractions_as_the_trainer_does():
    evaluator = TableEvaluator(NB201_CSV)  # the CSV holds percent (93.66); searches see fractions (0.9366)
    assert evaluator.lookup(EXAMPLE) == {"accuracy": pytest.approx(0.9366), "status": "ok"}
    best = nb201.string_to_genotype("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|"
                                    "nor_conv_1x1~1|nor_conv_3x3~2|")
    assert evaluator(best)["accuracy"] == pytest.approx(0.943733)
    column = load_table(evaluator.table)["accuracy"]
    assert column.shape == (15625,) and column.max() == pytest.approx(0.943733)
    assert 0.0 <= column.min() and column.max() <= 1.0


def test_percent_columns_are_configurable_and_checked(tmp_path):
    table = tmp_path / "fractions.csv"
    table.write_text(f"arch,accuracy,test_acc\n{EXAMPLE},91.5,0.9\n")
    assert TableEvaluator(table, percent=["accuracy"]).lookup(EXAMPLE) == {
        "accuracy": pytest.approx(0.915), "test_acc": 0.9, "status": "ok"}
    assert TableEvaluator(table, percent=[]).lookup(EXAMPLE)["accuracy"] == 91.5  # as stored
    with pytest.raises(ArchError, match="'test_acc' holds values from 0.9 to 0.9, not percentages"):
        TableEvaluator(table, percent=["test_acc"]).lookup(EXAMPLE)
    with pytest.raises(ArchError, match="names a column 'top5'"):
        TableEvaluator(table, percent=["top5"]).lookup(EXAMPLE)


def test_table_is_loaded_once():
    evaluator = TableEvaluator(NB201_CSV)
    evaluator((1, 2, 3, 4, 0, 1))
    misses = load_table.cache_info().misses
    for g in [(0,) * 6, (1,) * 6, (2,) * 6]:
        TableEvaluator(NB201_CSV)(g)
    assert load_table.cache_info().misses == misses


def test_space_with_other_option_order_is_mapped_by_label():
    reordered = tuple(reversed(nb201.OPS))
    space = Space.of([Decision(f"e{i}", reordered) for i in range(6)])
    evaluator = TableEvaluator(NB201_CSV)
    ours = (3, 3, 4, 1, 3, 1)
    theirs = tuple(reordered.index(nb201.OPS[v]) for v in ours)
    assert evaluator(theirs, space)["accuracy"] == pytest.approx(0.9366)
    with pytest.raises(ValueError, match="not the NAS-Bench-201 cell space"):
        evaluator((0, 0), Space.from_sizes(5, 5))


def test_partial_table_reports_missing_rows_as_failed(tmp_path):
    table = tmp_path / "part.csv"
    table.write_text(f"arch,accuracy,params\n{EXAMPLE},91.5,1000\n")
    evaluator = TableEvaluator(table)
    assert evaluator.lookup(EXAMPLE) == {"accuracy": pytest.approx(0.915), "params": 1000.0, "status": "ok"}
    missing = evaluator((0,) * 6)
    assert missing["status"] == "missing" and "not in" in missing["error"]


def test_bad_tables_are_user_errors(tmp_path):
    with pytest.raises(ArchError, match="not found"):
        TableEvaluator(tmp_path / "nope.csv")((0,) * 6)
    no_key = tmp_path / "no_key.csv"
    no_key.write_text("name,accuracy\nx,1\n")
    with pytest.raises(ArchError, match="column 'arch'"):
        TableEvaluator(no_key)((0,) * 6)
    bad_row = tmp_path / "bad_row.csv"
    bad_row.write_text(f"arch,accuracy\n{EXAMPLE},90\n|x~0|,1\n")
    with pytest.raises(ArchError, match=r"bad_row.csv:3:1: error: bad row"):
        TableEvaluator(bad_row)((0,) * 6)


def test_a_space_that_is_not_nb201_is_refused_before_the_first_candidate():
    evaluator = TableEvaluator(NB201_CSV)
    evaluator.prepare(nb201.SPACE, None)   # the benchmark's own space is fine
    other = Space([Decision("width", (8, 16)), Decision("depth", (1, 2))])
    with pytest.raises(ArchError) as info:
        evaluator.prepare(other, None)
    assert str(info.value).startswith("evaluator: error: evaluator=table looks candidates up in a NAS-Bench-201 "
                                      "table, and the space")
    assert "space=nb201" in info.value.hint
