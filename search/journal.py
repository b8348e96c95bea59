"""Run state on disk: an append-only journal of evaluations and atomically replaced JSON checkpoints.

The journal (history.jsonl) gets one JSON line per finished evaluation (``Journal.add``: the one place that
builds and writes a record, called by the search loop alone, for every strategy, DARTS too), flushed and fsynced
before the search moves on, so a kill at any moment loses at most the evaluation in flight. A last line cut short by
a kill is dropped when the journal is read back; any other damage (a bad line before the last, a line that is not a
record) stops the reader with ``history.jsonl:LINE:COL: error`` and leaves the file as it is, so no record is ever
lost.
"""
from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from compiler.errors import ArchError, Span


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so that readers see the old one or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=1))


def read_json(path: Path) -> Any | None:
    """A JSON file of a run directory, or None when there is none. Whatever is wrong with its text is a
    json.JSONDecodeError at a position (bytes that are not UTF-8, nesting deeper than Python's recursion limit), so
    that every reader reports one located error."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:   # the position in characters of the text as it shows
        raise json.JSONDecodeError("not UTF-8 text", data.decode("utf-8", "replace"),
                                   len(data[:err.start].decode("utf-8", "replace"))) from err
    try:
        return json.loads(text)
    except RecursionError as err:
        raise json.JSONDecodeError("nested too deeply", text, 0) from err


HISTORY_FILE = "history.jsonl"

# the fields every record has (written by Journal.add), with their JSON types (and "seconds", "time")
RECORD_FIELDS: dict[str, type] = {"index": int, "genotype": list, "decisions": dict, "arch": str, "metrics": dict,
                                  "status": str}


def _is(value: Any, kind: type) -> bool:
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))  # JSON true is no integer


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def of_run(cls, out_dir: Path) -> "Journal":
        """The journal of the run in ``out_dir``."""
        return cls(out_dir / HISTORY_FILE)

    def add(self, index: int, genotype: Sequence[int], decisions: Mapping[str, Any], arch: str,
            metrics: Mapping[str, Any], seconds: float) -> dict[str, Any]:
        """Record one finished evaluation: build its record (``index``: its place in the journal, from 0;
        ``decisions``: the space's description of the genotype; ``arch``: its canonical .arch text, "" when it did
        not compile), append it durably, and return it."""
        record = {"index": index, "genotype": list(genotype), "decisions": dict(decisions), "arch": arch,
                  "metrics": dict(metrics), "status": str(metrics.get("status", "ok")), "seconds": seconds,
                  "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        self._append(record)
        return record

    def read(self) -> list[dict[str, Any]]:
        """All records. A torn last line (a kill mid-write: no newline, or not JSON) is cut off the file; any other
        malformed line is an ArchError at its line, and the file is left untouched."""
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        lines = data.splitlines(keepends=True)
        records: list[dict[str, Any]] = []
        good = 0
        for number, line in enumerate(lines, start=1):
            last = number == len(lines)
            try:
                value = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
                if last and not isinstance(err, RecursionError):
                    break  # torn by a kill: the evaluation it held runs again
                column = err.colno if isinstance(err, json.JSONDecodeError) else 1
                reason = "nested too deeply" if isinstance(err, RecursionError) else getattr(err, "msg", err)
                raise self._error(number, column, f"not a JSON line ({reason})") from err
            if not line.endswith(b"\n"):
                break  # complete JSON but no newline: torn before its end, treated alike
            self._check(value, number, len(records))
            records.append(value)
            good += len(line)
        if good != len(data):
            with self.path.open("r+b") as handle:
                handle.truncate(good)
        return records

    def _check(self, value: Any, number: int, index: int) -> None:
        if not isinstance(value, dict):
            raise self._error(number, 1, f"not a record: a JSON {type(value).__name__}, not an object")
        missing = [k for k in RECORD_FIELDS if k not in value]
        if missing:
            raise self._error(number, 1, f"not a record: missing {', '.join(missing)}")
        wrong = [k for k, kind in RECORD_FIELDS.items() if not _is(value[k], kind)]
        if wrong:
            raise self._error(number, 1, "not a record: wrong type of " + ", ".join(
                f"{k} ({type(value[k]).__name__})" for k in wrong))
        if not all(_is(v, int) for v in value["genotype"]):
            raise self._error(number, 1, "not a record: the genotype is not a list of integers")
        if value["index"] != index:
            raise self._error(number, 1, f"record index {value['index']} where {index} was expected (a line "
                                         "duplicated, dropped or moved?)")

    def _error(self, line: int, column: int, message: str) -> ArchError:
        return ArchError(message, Span(str(self.path), line, column),
                         hint="the journal is damaged: restore it from a backup, or start over in a new out_dir; "
                              "nothing was changed")

    def _append(self, record: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
