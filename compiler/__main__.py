"""`python -m compiler ...`: compose the config with Hydra and run the task it names (``task._target_``).

Tasks are found through the config (``_target_``), so the compiler never imports the search package that
provides the search tasks. User mistakes print ``FILE:LINE:COL: error: ...`` and exit with status 2.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import hydra
from omegaconf import DictConfig

from compiler.config_values import check_value, load_target
from compiler.errors import ArchError

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        check_value(cfg.get("debug", False), bool, "debug")
        check_value(cfg.get("arch"), Optional[str], "arch", hint="the .arch file (with a search: the space's)")
        status = load_target(cfg.task.get("_target_"), "task._target_")(cfg)
    except ArchError as err:
        if cfg.get("debug") is True:
            raise
        print(err, file=sys.stderr)
        sys.exit(2)
    if status:
        sys.exit(status)


if __name__ == "__main__":
    main()
