"""`python -m compiler ...`: compose the config with Hydra and run the task it names (``task._target_``).

Tasks are found through the config (``_target_``), so the compiler never imports the search package that
provides the search tasks. User mistakes print ``FILE:LINE:COL: error: ...`` and exit with status 2; so does a
config Hydra cannot compose (an unknown key, group option or override syntax: Hydra's message, no traceback),
while a task's own statuses (1: nothing succeeded, 3, 4, ...) are passed on as they are. SIGINT and
SIGTERM end any task with one line and status 130 / 143: the signal is raised as an exception where the program is,
so every cleanup runs (journal and checkpoint stay consistent, worker processes stop, files are flushed); a second
signal ends the process at once.
"""
from __future__ import annotations

import os
import signal
import sys
from types import FrameType
from typing import Optional

import hydra
from omegaconf import DictConfig

import compiler.run_dir  # noqa: F401  (registers the resolver of hydra.run.dir before Hydra reads it)
from compiler.cli_checks import check_group_options, check_launcher
from compiler.config_values import check_value, load_target
from compiler.errors import ArchError
from compiler.resources import CONFIG_SEARCH_PATH

HYDRA_FAILED = 1  # the status Hydra exits with when it cannot compose the config (hydra/_internal/utils.py)


class _Progress:
    """Whether the task has started: Hydra exits with ``HYDRA_FAILED`` on its own errors and on a task's crash
    alike, and only the first, before the task starts, is the user's config."""

    task_started = False


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


@hydra.main(version_base="1.3", config_path=CONFIG_SEARCH_PATH, config_name="config")
def main(cfg: DictConfig) -> None:
    _Progress.task_started = True
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


def run() -> None:
    check_launcher(sys.argv[1:])
    check_group_options(sys.argv[1:])
    for handled in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(handled) is not signal.SIG_IGN:  # e.g. nohup: an ignored signal stays ignored
            signal.signal(handled, _on_signal)
    try:
        main()
    except KeyboardInterrupt as err:  # while Hydra composes the config, before the task starts
        sys.exit(_interrupted(err, ""))
    except SystemExit as done:
        if done.code == HYDRA_FAILED and not _Progress.task_started:  # Hydra printed why it could not compose
            sys.exit(2)
        raise


if __name__ == "__main__":
    run()
