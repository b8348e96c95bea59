"""A persistent cache of profiling reports keyed by (architecture, device, settings), so a search never measures
the same architecture twice. SQLite (standard library) holds it: in memory by default, or in a file that several
processes of a parallel search may share."""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from compiler.backends.printer import print_arch
from compiler.errors import ArchError, Span
from compiler.ir.graph import Graph
from compiler.backends.runtime.measure import Settings, device_info


def architecture_fingerprint(graph: Graph) -> str:
    """SHA-256 of the canonical .arch text, with the model's name left out: equal networks hash equal."""
    return hashlib.sha256(print_arch(replace(graph, name="model")).encode()).hexdigest()


@lru_cache(maxsize=None)
def _device_name(device: str) -> str:
    info = device_info(torch.device(device))
    return f"{info['type']} | {info['name']}"


def device_fingerprint(device: str, threads: int | None = None) -> str:
    """What about the machine changes a timing: device model, torch/CUDA versions, CPU threads."""
    parts = [_device_name(device), f"torch {torch.__version__}"]
    if device.startswith("cuda"):
        parts.append(f"cuda {torch.version.cuda}")
    else:
        parts.append(f"threads {threads or torch.get_num_threads()}")
    return " | ".join(parts)


def cache_key(graph: Graph, settings: Settings) -> str:
    key = {"arch": architecture_fingerprint(graph), "device": device_fingerprint(settings.device, settings.threads),
           "settings": settings.key()}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


class ProfileCache:
    """key -> report. ``path=None`` keeps it in memory; a path keeps it across runs and processes."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(self.path) if self.path else ":memory:", timeout=60,
                                       check_same_thread=False, isolation_level=None)
            self._db.execute("CREATE TABLE IF NOT EXISTS reports (key TEXT PRIMARY KEY, report TEXT NOT NULL, "
                             "created REAL NOT NULL)")
        except sqlite3.DatabaseError as err:   # a file that is no SQLite database (or a damaged one)
            raise ArchError(f"cannot use it as the profile cache: {err}", Span(str(self.path), 0, 0),
                            hint="point the cache at another file, or delete this one (it only saves time)") from err
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT report FROM reports WHERE key = ?", (key,)).fetchone()
            if row is None:
                self.misses += 1
                return None
            self.hits += 1
            return json.loads(row[0])

    def put(self, key: str, report: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO reports VALUES (?, ?, ?)",
                             (key, json.dumps(report), time.time()))

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM reports").fetchone()[0])

    def close(self) -> None:
        self._db.close()
