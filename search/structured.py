"""Typed options from a config node: a Hydra/OmegaConf node merged over a structured dataclass, with OmegaConf's
own errors (unknown key, wrong type) turned into the caller's located config error."""
from __future__ import annotations

from typing import Any, Callable, Mapping, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")


def structured(schema: type[T], node: DictConfig | Mapping[str, Any] | None, *overrides: Mapping[str, Any],
               error: Callable[[str, str], Exception]) -> T:
    """``schema``'s defaults, then ``node``, then ``overrides``; ``error(key, message)`` is raised (from
    OmegaConf's exception) for a key the schema lacks or a value of the wrong type."""
    if isinstance(node, DictConfig):  # resolve interpolations (${seed}) against the config it came from
        node = OmegaConf.to_container(node, resolve=True)  # type: ignore[assignment]
    try:
        result = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), node or {}, *overrides))
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        raise error(str(key), str(err).splitlines()[0]) from err
    assert isinstance(result, schema)
    return result
