"""The files this package ships, found through ``importlib.resources`` wherever the package is installed.

They are package data of ``compiler`` (in a checkout, ``compiler/grammar``, ``compiler/conf`` and
``compiler/spaces`` are links to the top-level ``grammar/``, ``conf/`` and ``examples/spaces/``; a wheel holds
copies), so a checkout, an editable install and a wheel read them the same way and nothing depends on the current
directory:

* ``grammar/arch.lark``: the language (read by the parser);
* ``conf/``: the Hydra configs, the importable package ``compiler.conf`` (``CONFIG_PACKAGE``, Hydra's
  ``pkg://`` search path);
* ``spaces/*.arch``: the example search spaces that ``conf/space/*.yaml`` name (``${resource:spaces/NAME.arch}``).

Data that is not shipped (the NAS-Bench-201 table, the JPEG CIFAR-10 archive) lies in ``shared/data`` beside a
checkout, or wherever ``$AUTOML_SHARED_DATA`` says (``shared_data``).
"""
from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

PACKAGE = "compiler"
CONFIG_PACKAGE = "compiler.conf"
CONFIG_SEARCH_PATH = f"pkg://{CONFIG_PACKAGE}"
SHARED_DATA_ENV = "AUTOML_SHARED_DATA"
# What ${shared_data:} gives when neither $AUTOML_SHARED_DATA nor a checkout says where the data is: a relative
# path that no file exists under, so the "not found" error of whatever reads it names the variable to set.
SHARED_DATA_UNSET = f"{SHARED_DATA_ENV}-is-not-set"


def resource(relative: str) -> Path:
    """A file or folder the package ships, e.g. ``resource("spaces/nb201.arch")``, as a path on disk.

    pip installs a wheel unpacked, so the resources are plain files that Hydra, the parser and the user's tools can
    open by name. The path is resolved: in a checkout it names the file in its top-level folder
    (examples/spaces/nb201.arch), as messages and recorded run configurations always did."""
    return Path(str(files(PACKAGE).joinpath(relative))).resolve()


def grammar_text() -> str:
    """The Lark grammar of the .arch language."""
    return files(PACKAGE).joinpath("grammar/arch.lark").read_text(encoding="utf-8")


def checkout_root() -> Path | None:
    """The source checkout the package runs from (its pyproject.toml beside the package), None when installed."""
    root = resource(".").parent
    return root if (root / "pyproject.toml").is_file() and (root / "conf").is_dir() else None


def shared_data() -> str:
    """Where the data sets that are not shipped lie: ``$AUTOML_SHARED_DATA``; else ``shared/data`` beside the
    checkout; else (an installed package without the variable) ``SHARED_DATA_UNSET``."""
    if os.environ.get(SHARED_DATA_ENV):
        return os.environ[SHARED_DATA_ENV]
    root = checkout_root()
    return str(root.parent / "shared" / "data") if root else SHARED_DATA_UNSET
