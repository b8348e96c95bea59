"""`python -m compiler ...`: compose the config with Hydra and run the task it names (``task._target_``).

Tasks are found through the config (``_target_``), so the compiler never imports the search package that
provides the search tasks. User mistakes print ``FILE:LINE:COL: error: ...`` and exit with status 2. SIGINT and
SIGTERM end any task with one line and status 130 / 143: the signal is raised as an exception where the program is,
so every cleanup runs (journal and checkpoint stay consistent, worker processes stop, files are flushed); a second
signal ends the process at once.
"""
from __future__ import annotations

import importlib.util
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Optional

import hydra
from omegaconf import DictConfig

import compiler.run_dir  # noqa: F401  (registers the resolver of hydra.run.dir before Hydra reads it)
from compiler.config_values import check_value, load_target
from compiler.errors import ArchError

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM. A KeyboardInterrupt, so that code which lets Ctrl-C through lets SIGTERM through too."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _on_signal(signum: int, frame: FrameType | None) -> None:
    for handled in (signal.SIGINT, signal.SIGTERM):  # the cleanup the first one starts may not be interrupted...
        signal.signal(handled, _exit_now)
    raise Interrupted(signum)


def _exit_now(signum: int, frame: FrameType | None) -> None:
    os._exit(128 + signum)  # ... except by a second signal: the user insists


def _interrupted(err: KeyboardInterrupt, where: str) -> int:
    signum = getattr(err, "signum", signal.SIGINT)  # a plain KeyboardInterrupt: SIGINT before our handler
    print(f"interrupted ({signal.Signals(signum).name}){where}", file=sys.stderr)
    return 128 + signum


def _where(cfg: DictConfig) -> str:
    from compiler.run_dir import output_dir
    out = output_dir(cfg)
    if cfg.task.get("resumable"):
        return f": the run in {out} can be resumed with the same command"
    return f": the files written so far are in {out}"


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
    except KeyboardInterrupt as err:
        if cfg.get("debug"):
            raise
        sys.exit(_interrupted(err, _where(cfg)))
    if status:
        sys.exit(status)


SUBMITIT_PLUGIN = "hydra_plugins.hydra_submitit_launcher"


def _check_launcher(argv: list[str]) -> None:
    """``hydra/launcher=submitit_*`` (conf/hydra/launcher/) without Hydra's submitit plugin: one line naming the
    extra that installs it, exit status 2 (Hydra would stop later with a traceback)."""
    for arg in argv:
        key, _, value = arg.partition("=")
        if key.lstrip("+~") == "hydra/launcher" and value.startswith("submitit_") \
                and importlib.util.find_spec(SUBMITIT_PLUGIN) is None:
            print(f"hydra/launcher: error: hydra/launcher={value} needs Hydra's submitit launcher plugin, which is "
                  "not installed\n  hint: install the extra: pip install -e '.[slurm]'", file=sys.stderr)
            sys.exit(2)


def run() -> None:
    _check_launcher(sys.argv[1:])
    for handled in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(handled) is not signal.SIG_IGN:  # e.g. nohup: an ignored signal stays ignored
            signal.signal(handled, _on_signal)
    try:
        main()
    except KeyboardInterrupt as err:  # while Hydra composes the config, before the task starts
        sys.exit(_interrupted(err, ""))


if __name__ == "__main__":
    run()
