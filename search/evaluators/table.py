"""Tabular benchmark lookup: a CSV of ``arch,<metric>...`` rows keyed by the NAS-Bench-201 cell string.

The table is read lazily on the first lookup, once per file per process, into one float array per metric column
indexed by the genotype's mixed-radix rank (15,625 rows -> a few hundred kB).
"""
from __future__ import annotations

import csv
import math
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from compiler.errors import ArchError, Span
from search import nb201
from search.space import DiscreteSpace, index_of, size

KEY_COLUMN = "arch"


@lru_cache(maxsize=4)
def load_table(path: str) -> dict[str, np.ndarray]:
    """Metric name -> values by genotype index (NaN where the table has no row)."""
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
        columns = {m: np.full(size(nb201.SPACE), np.nan) for m in metrics}
        for line, row in enumerate(reader, start=2):
            try:
                index = index_of(nb201.SPACE, nb201.string_to_genotype(row[KEY_COLUMN]))
                for m in metrics:
                    columns[m][index] = float(row[m])
            except (ValueError, TypeError) as err:
                raise ArchError(f"bad row: {err}", span=Span(str(path), line, 1)) from err
    return columns


class TableEvaluator:
    """``evaluator(genotype, space) -> metrics`` by table lookup; a genotype missing from the table is reported
    with status "missing" (a failed candidate), not an exception, so a partial table still supports a search."""

    def __init__(self, table: str | Path) -> None:
        self.table = str(Path(table).expanduser().resolve())
        if not Path(self.table).is_file():  # checked now, not by every candidate of the search
            raise ArchError(f"table {str(table)!r} not found", span=Span("evaluator.table", 0, 0),
                            hint="set evaluator.table to a CSV with columns arch,accuracy, "
                                 "e.g. ../shared/data/nb201-cifar10.csv")

    def __call__(self, genotype: Sequence[int], space: DiscreteSpace | None = None) -> dict[str, Any]:
        cell = nb201.to_nb201_genotype(space or nb201.SPACE, genotype)
        index = index_of(nb201.SPACE, cell)
        values = {m: float(column[index]) for m, column in load_table(self.table).items()}
        if any(math.isnan(v) for v in values.values()):
            return {"status": "missing", "error": f"{nb201.genotype_to_string(cell)} is not in {self.table}"}
        return {**values, "status": "ok"}

    def lookup(self, arch: str) -> Mapping[str, float]:
        """Metrics of one benchmark string."""
        return self(nb201.string_to_genotype(arch))
