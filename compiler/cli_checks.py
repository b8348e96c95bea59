"""Command-line mistakes caught before Hydra composes the config, where Hydra's own message would be weaker.

Hydra reports an option a config group does not have (``+search=evoluton``) with its search path and a pointer to
``HYDRA_FULL_ERROR``; here it is one ``GROUP: error:`` line naming the closest option, and the options as the hint.
Only what can be known from the command line alone is checked: overrides of this package's own groups with plain
names (or comma-separated sweeps of them), and only when no other config directory is added (``hydra.searchpath``,
``--config-dir``), since options there are not known here. Everything else is left to Hydra.
"""
from __future__ import annotations

import difflib
import importlib.util
import re
import sys
from pathlib import Path

from compiler.resources import resource

SUBMITIT_PLUGIN = "hydra_plugins.hydra_submitit_launcher"
PLAIN_OPTIONS = re.compile(r"[A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*\Z")   # `evolution` or a sweep `evolution,random`
OTHER_CONFIG_DIRS = ("hydra.searchpath", "--config-dir", "-cd", "--config-path", "-cp")


def _refuse(key: str, message: str, hint: str) -> None:
    print(f"{key}: error: {message}\n  hint: {hint}", file=sys.stderr)
    sys.exit(2)


def group_options(conf: Path) -> dict[str, list[str]]:
    """This package's top-level config groups and their options (``search`` -> [darts, evolution, ...])."""
    return {group.name: sorted(p.stem for p in group.glob("*.yaml"))
            for group in sorted(conf.iterdir()) if group.is_dir() and any(group.glob("*.yaml"))}


def check_group_options(argv: list[str], conf: Path | None = None) -> None:
    """An override that picks an option its config group does not have: one line, the closest option, exit 2."""
    if any(arg.split("=")[0].lstrip("+~") in OTHER_CONFIG_DIRS for arg in argv):
        return
    groups = group_options(conf or resource("conf"))
    for arg in argv:
        key, sep, value = arg.partition("=")
        group = key.lstrip("+~")
        if not sep or group not in groups or not PLAIN_OPTIONS.match(value):
            continue
        for option in value.split(","):
            if option not in groups[group] and option != "null":   # group=null: Hydra's way to drop a default
                close = difflib.get_close_matches(option, groups[group], n=1)
                guess = f"; did you mean '{close[0]}'?" if close else ""
                _refuse(group, f"no option '{option}' in the config group '{group}'{guess}",
                        f"{group} is one of: {', '.join(groups[group])}")


def check_launcher(argv: list[str]) -> None:
    """``hydra/launcher=submitit_*`` (conf/hydra/launcher/) without Hydra's submitit plugin: one line naming the
    extra that installs it, exit status 2 (Hydra would stop later with a traceback)."""
    for arg in argv:
        key, _, value = arg.partition("=")
        if key.lstrip("+~") == "hydra/launcher" and value.startswith("submitit_") \
                and importlib.util.find_spec(SUBMITIT_PLUGIN) is None:
            _refuse("hydra/launcher", f"hydra/launcher={value} needs Hydra's submitit launcher plugin, which is not "
                    "installed", "install the extra: pip install -e '.[slurm]'")
