"""Config values checked where they enter: a value against a type annotation, a key against the valid keys.

A mistake is a ``ConfigError`` printed as ``KEY: error: ...`` (the config key stands where a file would), exit
status 2. Types are read from annotations (dataclass fields or a function's parameters), so a schema is written once,
where the value is used; numbers must be finite, booleans must be booleans (OmegaConf would read 2 as true).
"""
from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import inspect
import math
import os
import types
import typing
from typing import Any, Callable, Iterable, Literal, Mapping, Union

from compiler.errors import ArchError, Span


class ConfigError(ArchError):
    """A config value that cannot work: ``KEY: error: MESSAGE`` (``key`` is the full dotted config key)."""

    def __init__(self, key: str, message: str, hint: str | None = None) -> None:
        self.key = key
        super().__init__(message, Span(key, 0, 0), hint=hint)


def join(prefix: str, key: str) -> str:
    """``prefix.key``; either may be empty."""
    return f"{prefix}.{key}" if prefix and key else prefix or key


def unknown_key_text(prefix: str, key: str, valid: Iterable[str]) -> tuple[str, str]:
    """The message and hint for ``prefix.key``, which is not a key here: the closest valid key, and all of them."""
    valid = sorted(k for k in valid if not k.startswith("_"))
    close = difflib.get_close_matches(key, valid, n=1)
    guess = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown key '{key}'{guess}", f"the keys of {prefix or 'the config'}: {', '.join(valid) or '(none)'}"


def unknown_key(prefix: str, key: str, valid: Iterable[str]) -> ConfigError:
    return ConfigError(join(prefix, key), *unknown_key_text(prefix, key, valid))


def check_keys(prefix: str, given: Iterable[str], valid: Iterable[str]) -> None:
    valid = list(valid)
    for key in given:
        if key not in valid and not str(key).startswith("_"):
            raise unknown_key(prefix, str(key), valid)


_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}


def describe(annotation: Any) -> str:
    """How a person would say the type: 'an integer or null', 'a list', ..."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        members = typing.get_args(annotation)
        if float in members:  # a number covers the integers
            members = tuple(m for m in members if m is not int)
        return " or ".join(dict.fromkeys(describe(a) for a in members))
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(annotation))
    if annotation in _NAMES:
        return _NAMES[annotation]
    if annotation in (os.PathLike,) or getattr(annotation, "__name__", "") in ("Path", "PurePath"):
        return "a path"
    base = origin or annotation
    if isinstance(base, type) and issubclass(base, collections.abc.Mapping):
        return "a mapping ({key: value, ...})"
    if isinstance(base, type) and issubclass(base, collections.abc.Iterable):
        return "a list ([a, b, ...])"
    return getattr(annotation, "__name__", str(annotation))


def matches(value: Any, annotation: Any) -> bool:
    """Whether ``value`` (plain data from a config) fits ``annotation`` (``Any`` fits everything)."""
    if annotation is Any or annotation is typing.Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(matches(value, a) for a in typing.get_args(annotation))
    if origin is Literal:
        return value in typing.get_args(annotation)
    if annotation is type(None) or annotation is None:
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if annotation is str:
        return isinstance(value, str)
    if annotation is os.PathLike or getattr(annotation, "__name__", "") in ("Path", "PurePath"):
        return isinstance(value, (str, os.PathLike))
    base = origin or annotation
    if not isinstance(base, type):
        return True
    if issubclass(base, collections.abc.Mapping):
        return isinstance(value, collections.abc.Mapping)
    if issubclass(base, (str, bytes)):
        return isinstance(value, base)
    if issubclass(base, collections.abc.Iterable):
        if isinstance(value, (str, bytes, collections.abc.Mapping)) or not isinstance(value, collections.abc.Iterable):
            return False
        args = typing.get_args(annotation)
        item = args[0] if len(args) == 1 or (len(args) == 2 and args[1] is Ellipsis) else Any
        return all(matches(v, item) for v in value)
    if base is object:
        return True
    return isinstance(value, base)  # a class of objects: plain config data is never one


ErrorFactory = Callable[[str, str, "str | None"], Exception]   # (key, message, hint) -> the error to raise


def _schema_of(annotation: Any) -> type | None:
    """The dataclass an annotation (``X`` or ``Optional[X]``) stands for, if any."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if dataclasses.is_dataclass(candidate) and isinstance(candidate, type):
            return candidate
    return None


def check_fields(schema: type, values: Any, error: ErrorFactory, prefix: str = "", label: str = "") -> None:
    """Every key of ``values`` is a field of ``schema`` and every value fits the field's type (recursively).
    ``error`` gets keys relative to the node; ``label`` is the node's full key, for the hints."""
    if not isinstance(values, Mapping):
        raise error(prefix or "?", f"expected a mapping ({{key: value, ...}}), not {values!r}", None)
    hints = typing.get_type_hints(schema)
    names = [f.name for f in dataclasses.fields(schema)]
    for key, value in values.items():
        where = join(prefix, str(key))
        if key not in names:
            message, hint = unknown_key_text(join(label, prefix), str(key), names)
            raise error(where, message, hint)
        nested = _schema_of(hints[key])
        if nested is not None and not (value is None and matches(None, hints[key])):
            check_fields(nested, value, error, where, label)
        elif nested is None and not matches(value, hints[key]):
            raise error(where, f"expected {describe(hints[key])}, not {value!r}", None)


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) or not value.is_integer() else str(int(value))


def check_value(value: Any, annotation: Any, key: str, *, minimum: float | None = None,
                maximum: float | None = None, hint: str | None = None) -> Any:
    """``value`` if it fits ``annotation`` (and the inclusive range, for numbers); else a ConfigError."""
    if not matches(value, annotation):
        shown = "nan" if isinstance(value, float) and math.isnan(value) else repr(value)
        raise ConfigError(key, f"expected {describe(annotation)}, not {shown}", hint=hint)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if minimum is not None and value < minimum:
            raise ConfigError(key, f"must be >= {_number(minimum)}, not {value!r}", hint=hint)
        if maximum is not None and value > maximum:
            raise ConfigError(key, f"must be <= {_number(maximum)}, not {value!r}", hint=hint)
    return value


def annotations_of(function: Callable[..., Any]) -> dict[str, Any]:
    """The resolved annotations of a function (or a class's ``__init__``), ``Any`` where they cannot be read."""
    target = function.__init__ if isinstance(function, type) else function  # type: ignore[misc]
    try:
        return typing.get_type_hints(target)
    except NameError:  # an annotation naming something imported only for type checkers: judge nothing
        return {}


SEED_MAX = 2**32 - 1   # NumPy's legacy seeding and scikit-learn take seeds in [0, 2**32 - 1]


def check_seed(value: Any, key: str) -> int:
    return check_value(value, int, key, minimum=0, maximum=SEED_MAX,
                       hint="seeds are integers from 0 to 4294967295")


def parameters_of(function: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    """The keyword-passable parameters of a function or class (its ``__init__`` without ``self``)."""
    return {name: p for name, p in inspect.signature(function).parameters.items()
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}


def check_arguments(function: Callable[..., Any], args: Mapping[str, Any], prefix: str, *,
                    supplied: Iterable[str] = (), keywords: type | None = None) -> None:
    """Config keys ``args`` as keyword arguments of ``function``: no unknown key (the closest one is suggested),
    no required one missing, every value of its annotated type. ``supplied``: arguments the caller passes itself
    (a space, a seed), which the config must not set. ``keywords``: the dataclass whose fields a ``**kwargs``
    parameter takes (without it, ``**kwargs`` takes any key)."""
    supplied = set(supplied)
    params = {k: p for k, p in parameters_of(function).items() if k not in supplied}
    hints = annotations_of(function)
    if keywords is not None:
        hints = {**typing.get_type_hints(keywords), **hints}
        params = {**{f.name: inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None)
                     for f in dataclasses.fields(keywords)}, **params}
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(function).parameters.values())
    if keywords is not None or not open_ended:
        check_keys(prefix, args, params)
    for name, p in params.items():
        if p.default is inspect.Parameter.empty and name not in args:
            raise ConfigError(join(prefix, name), "required, but not given")
    for key, value in args.items():
        if key in hints and not str(key).startswith("_"):
            check_value(value, hints[key], join(prefix, str(key)))


def load_target(path: Any, key: str) -> Callable[..., Any]:
    """The function or class a config's ``_target_`` names."""
    from hydra.utils import get_method

    if not isinstance(path, str) or not path:
        raise ConfigError(key, f"expected a dotted path to a function or class, not {path!r}")
    try:
        return get_method(path)
    except (ImportError, ValueError) as err:  # hydra's: not importable, or not callable
        reason = " ".join(line.strip() for line in str(err).splitlines()[1:2]) or str(err)
        raise ConfigError(key, f"cannot load '{path}': {reason}",
                          hint="a _target_ names an importable function or class, e.g. "
                               "search.strategies.evolution.RegularizedEvolution") from err
