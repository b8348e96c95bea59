"""The decoded-image cache: uint8 tensor files keyed by the source and its contents, written atomically."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

CACHE_ENV = "AUTOML_CODEGEN_CACHE"
DEFAULT_CACHE = "~/.cache/automl-codegen"


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``cache_dir`` if given, else $AUTOML_CODEGEN_CACHE, else ~/.cache/automl-codegen."""
    return Path(os.path.expanduser(str(cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_CACHE)))


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes (an 18 MB archive takes a few tens of milliseconds)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def tree_fingerprint(root: Path) -> str:
    """sha256 over every file's relative path, size and modification time: any added, removed or rewritten
    file changes it, without reading tens of thousands of images on every load."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        st = path.stat()
        h.update(f"{path.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def cache_key(**parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def save_tensors(obj: dict[str, Any], path: Path) -> None:
    """Write next to the target, flush it to disk, then rename: a killed run (or a full disk) never leaves a
    half-written cache file behind, nor a temporary one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_tensors(path: Path) -> dict[str, Any] | None:
    """Memory-mapped load: the tensors are paged in as they are used, so a load takes milliseconds. A cache file
    that cannot be read (damaged on disk) is deleted and None returned: the caller decodes the data again."""
    try:
        return torch.load(path, mmap=True, weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as err:
        log.warning("the cached data %s cannot be read (%s: %s); it is rebuilt", path, type(err).__name__,
                    str(err).splitlines()[0][:200] if str(err) else "")
        path.unlink(missing_ok=True)
        return None
