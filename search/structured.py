"""Typed options from a config node: a Hydra/OmegaConf node checked against a dataclass schema, then merged over it.

The check comes first (``compiler.config_values.check_fields``) and names the full key: an unknown key with the
closest valid one and the list of valid keys, a value of the wrong type (booleans must be booleans, numbers
finite). OmegaConf then builds the object.
"""
from __future__ import annotations

from typing import Any, Mapping, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from compiler.config_values import ErrorFactory, check_fields

T = TypeVar("T")


def plain(node: Any) -> Any:
    """A DictConfig/ListConfig as plain data, interpolations (${seed}) resolved against the config it came from."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def structured(schema: type[T], node: DictConfig | Mapping[str, Any] | None, *overrides: Mapping[str, Any],
               error: ErrorFactory, label: str = "") -> T:
    """``schema``'s defaults, then ``node``, then ``overrides``, each checked first (``check_fields``);
    ``error(key, message, hint)`` is raised for a key the schema lacks or a value of the wrong type."""
    parts = [plain(part) or {} for part in (node, *overrides)]
    for part in parts:
        check_fields(schema, part, error, label=label)
    try:
        result = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), *parts))
    except OmegaConfBaseException as err:  # what the check above cannot see (e.g. a list of the wrong length)
        key = getattr(err, "full_key", None) or "?"
        raise error(str(key), str(err).splitlines()[0], None) from err
    assert isinstance(result, schema)
    return result
