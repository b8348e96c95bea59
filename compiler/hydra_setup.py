"""What the configs in conf/ need from Python before Hydra composes them (imported by ``compiler``'s __init__).

* ``${resource:PATH}``: a file the package ships (compiler/resources.py), e.g. ``${resource:spaces/nb201.arch}``,
  so conf/ works from any directory, in a checkout and installed alike.
* ``${shared_data:}``: the folder of the data sets that are not shipped: ``$AUTOML_SHARED_DATA``, else
  ``shared/data`` beside the checkout; an installed package without the variable gets a path that names it, so the
  "not found" error of the table or archive says what to set.
* ``${arch_or:DEFAULT}``: the top-level ``arch`` when given, else DEFAULT. conf/space/*.yaml read their file so,
  which makes ``+search=random arch=my_space.arch`` search that file (``space.arch=...`` still names it directly).
* ``open_search``: the ``search`` node, open to keys Hydra's struct mode would refuse. conf/search/*.yaml start from
  it so that every ``search.*`` override, typo or not, reaches the schema check of the search task
  (search/schema.py), which names the closest valid key instead of Hydra's advice to add the key with ``+``.
* conf/hydra/launcher/submitit_*.yaml document the submitit launcher's resources under the plugin's own names, so
  Hydra also checks them against the plugin's schema of that name and warns that this matching is deprecated; the
  files are complete (without the matching they still work), so the warning is silenced.
"""
from __future__ import annotations

import warnings
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from compiler.resources import resource, shared_data


def _arch_or(default: str, *, _root_: DictConfig) -> Any:
    return _root_.get("arch") or default


def _open_search_node() -> DictConfig:
    node = OmegaConf.create({"search": {}})
    OmegaConf.set_struct(node.search, False)
    return node


if not OmegaConf.has_resolver("resource"):
    OmegaConf.register_new_resolver("resource", lambda relative: str(resource(relative)))
if not OmegaConf.has_resolver("shared_data"):
    OmegaConf.register_new_resolver("shared_data", shared_data)
if not OmegaConf.has_resolver("arch_or"):
    OmegaConf.register_new_resolver("arch_or", _arch_or)
ConfigStore.instance().store(name="open_search", node=_open_search_node())
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/submitit_\w+' is validated against ConfigStore schema",
                        category=UserWarning)
