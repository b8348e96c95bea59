"""What the configs in conf/ need from Python before Hydra composes them (imported by ``compiler``'s __init__).

* ``${project_root:}``: the checkout this package runs from, so paths in conf/ work from any directory.
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
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _arch_or(default: str, *, _root_: DictConfig) -> Any:
    return _root_.get("arch") or default


def _open_search_node() -> DictConfig:
    node = OmegaConf.create({"search": {}})
    OmegaConf.set_struct(node.search, False)
    return node


if not OmegaConf.has_resolver("project_root"):
    OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))
if not OmegaConf.has_resolver("arch_or"):
    OmegaConf.register_new_resolver("arch_or", _arch_or)
ConfigStore.instance().store(name="open_search", node=_open_search_node())
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/submitit_\w+' is validated against ConfigStore schema",
                        category=UserWarning)
