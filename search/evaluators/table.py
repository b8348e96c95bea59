"""Tabular benchmark lookup: a CSV of ``arch,<metric>...`` rows keyed by the NAS-Bench-201 cell string.

The table is read lazily on the first lookup, once per file per process, into one float array per metric column
indexed by the genotype's mixed-radix rank (15,625 rows -> a few hundred kB).

Units: accuracies are fractions in [0, 1] everywhere in a search (the trainer's unit, and the objectives'). Columns
that a table stores in percent (NAS-Bench-201's ``accuracy``) are named in ``percent`` and divided by 100 on reading;
a column so named whose values cannot be percentages (any outside [0, 100], or all of them <= 1) is refused.
"""
from __future__ import annotations

import csv
import math
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from compiler.errors import ArchError, Span
from compiler.ir.space import Space
from search import nb201
from search.evaluators.base import EvaluatorBase

KEY_COLUMN = "arch"


PERCENT_COLUMNS = ("accuracy",)  # what NAS-Bench-201's CSV (../shared/data/nb201-cifar10.csv) holds in percent


@lru_cache(maxsize=4)
def load_table(path: str, percent: tuple[str, ...] = PERCENT_COLUMNS) -> dict[str, np.ndarray]:
    """Metric name -> values by genotype index (NaN where the table has no row); ``percent`` columns as fractions."""
    file = Path(path)
    if not file.is_file():
        raise ArchError(f"table {path!r} not found", span=Span(str(path), 0, 0),
                        hint="set evaluator.table to a CSV with columns arch,accuracy, "
                             "e.g. ../shared/data/nb201-cifar10.csv")
    with file.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        metrics = [f for f in fields if f != KEY_COLUMN]
        if KEY_COLUMN not in fields or not metrics:
            raise ArchError(f"the table needs a column {KEY_COLUMN!r} and at least one metric column; "
                            f"it has {fields}", span=Span(str(path), 1, 1))
        columns = {m: np.full(nb201.SPACE.size, np.nan) for m in metrics}
        for line, row in enumerate(reader, start=2):
            try:
                index = nb201.SPACE.index_of(nb201.string_to_genotype(row[KEY_COLUMN]))
                for m in metrics:
                    columns[m][index] = float(row[m])
            except (ValueError, TypeError) as err:
                raise ArchError(f"bad row: {err}", span=Span(str(path), line, 1)) from err
    for name in percent:
        if name not in columns:
            raise ArchError(f"evaluator.percent names a column {name!r} that the table does not have "
                            f"(it has {metrics})", span=Span(str(path), 1, 1),
                            hint="set evaluator.percent to the columns stored in percent, or [] for none")
        values = columns[name][~np.isnan(columns[name])]
        if values.size and (values.min() < 0 or values.max() > 100 or values.max() <= 1):
            raise ArchError(f"column {name!r} holds values from {values.min():g} to {values.max():g}, not percentages",
                            span=Span(str(path), 1, 1), hint="if they are fractions already, leave the column out "
                            "of evaluator.percent (e.g. evaluator.percent=[])")
        columns[name] = columns[name] / 100.0
    return columns


class TableEvaluator(EvaluatorBase):
    """``evaluator(genotype, space) -> metrics`` by table lookup; a genotype missing from the table is reported
    with status "missing" (a failed candidate), not an exception, so a partial table still supports a search."""

    def __init__(self, table: str | Path, percent: Sequence[str] = PERCENT_COLUMNS) -> None:
        self.table = str(Path(table).expanduser().resolve())
        self.percent = tuple(percent)  # columns the table stores in percent: reported as fractions
        if not Path(self.table).is_file():  # checked now, not by every candidate of the search
            raise ArchError(f"table {str(table)!r} not found", span=Span("evaluator.table", 0, 0),
                            hint="set evaluator.table to a CSV with columns arch,accuracy (the default is "
                                 "nb201-cifar10.csv in $AUTOML_SHARED_DATA, else in shared/data beside the checkout)")

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The table's metric columns (reading the table, once per process, as the first lookup would)."""
        return tuple(load_table(self.table, self.percent))

    def prepare(self, space: Any, run_dir: Path | None) -> None:
        """The table knows NAS-Bench-201 cells only: any other space is refused before the first candidate (every
        candidate would fail alike)."""
        if isinstance(space, Space) and not nb201.option_labels_match(space):
            raise ArchError(f"evaluator=table looks candidates up in a NAS-Bench-201 table, and the space "
                            f"'{space.name}' is not the NAS-Bench-201 cell space (it needs 6 decisions, the edges "
                            f"in string order, each with the options {', '.join(nb201.OPS)})",
                            span=Span("evaluator", 0, 0),
                            hint="search space=nb201 with it, or train the candidates: evaluator=train")

    def __call__(self, genotype: Sequence[int], space: Space | None = None) -> dict[str, Any]:
        cell = nb201.to_nb201_genotype(space or nb201.SPACE, genotype)
        index = nb201.SPACE.index_of(cell)
        values = {m: float(column[index]) for m, column in load_table(self.table, self.percent).items()}
        if any(math.isnan(v) for v in values.values()):
            return {"status": "missing", "error": f"{nb201.genotype_to_string(cell)} is not in {self.table}"}
        return {**values, "status": "ok"}

    def lookup(self, arch: str) -> Mapping[str, float]:
        """Metrics of one benchmark string."""
        return self(nb201.string_to_genotype(arch))
