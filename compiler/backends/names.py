"""Python identifiers for generated code: every name that reaches source passes through here."""
from __future__ import annotations

import builtins
import hashlib
import keyword
import re

import torch.nn

_RESERVED = (set(dir(builtins)) | set(keyword.kwlist) | set(keyword.softkwlist)
             | set(dir(torch.nn.Module)) | {"self", "torch", "nn", "F", "INPUT_SHAPE", "build_model"})
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
MAX_LENGTH = 60


def python_name(name: str, used: set[str]) -> str:
    """A readable, safe, unique identifier for ``name`` (added to ``used``).

    Rejects nothing: anything not a plain ASCII identifier is rewritten, leading underscores are dropped
    (no dunder or private names), reserved words and nn.Module attributes get a trailing underscore, long names
    are shortened with a hash, and clashes are numbered.
    """
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", name).lstrip("_") or "v"
    if cleaned[0].isdigit():
        cleaned = "v" + cleaned
    if len(cleaned) > MAX_LENGTH:
        digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        cleaned = f"{cleaned[:MAX_LENGTH - 9]}_{digest}"
    if cleaned in _RESERVED:
        cleaned += "_"
    candidate, n = cleaned, 1
    while candidate in used or candidate in _RESERVED:
        n += 1
        candidate = f"{cleaned}_{n}"
    assert _IDENT.match(candidate) and not keyword.iskeyword(candidate)
    used.add(candidate)
    return candidate


def class_name(name: str) -> str:
    camel = "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", name) if part)
    return python_name(camel or "Model", set())
