"""`python -m compiler ...`: compose the config with Hydra and run the task it names (``task._target_``).

Tasks are found through the config (``_target_``), so the compiler never imports the search package that
provides the search tasks. User mistakes print ``FILE:LINE:COL: error: ...`` and exit with status 2.
"""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.utils import get_method
from omegaconf import DictConfig

from compiler.errors import ArchError

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    task = get_method(cfg.task._target_)
    try:
        status = task(cfg)
    except ArchError as err:
        if cfg.get("debug"):
            raise
        print(err, file=sys.stderr)
        sys.exit(2)
    if status:
        sys.exit(status)


if __name__ == "__main__":
    main()
