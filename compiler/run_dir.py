"""The output directory of a run: checked before any work, and held by one run at a time.

`out_dir` must be a directory this process can create and write, outside the kernel's file systems. A run holds
an OS lock (``flock``) on ``OUT/.run.lock`` for its whole life; the kernel drops it on any exit, SIGKILL included,
so a crashed run never leaves a stale lock, and a second run on the same directory is refused at once with the
holder's pid. On the command line both happen in a Hydra callback, before Hydra writes its own files (``.hydra/``,
the job log) into the directory.
"""
from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from compiler.errors import ArchError, Span

LOCK_FILE = ".run.lock"
SYSTEM_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))  # kernel file systems: never a place for outputs

# `hydra.run.dir: ${out_dir_or:${out_dir},'outputs/...'}`: Hydra's run directory is out_dir when one is given
if not OmegaConf.has_resolver("out_dir_or"):
    OmegaConf.register_new_resolver("out_dir_or", lambda out_dir, default: out_dir if out_dir else default)


def launch_rank() -> int:
    """This process's rank when a launcher started several copies of the command (torchrun sets ``RANK``), else 0.
    Only rank 0 claims the run directory and writes files into it, Hydra's own included."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


# `${rank_zero:VALUE,OTHER}`: VALUE in rank 0, OTHER (default null) in the other ranks (conf/config.yaml: Hydra's
# .hydra/ and job log are written by rank 0 alone)
if not OmegaConf.has_resolver("rank_zero"):
    OmegaConf.register_new_resolver("rank_zero", lambda value, other=None: value if launch_rank() == 0 else other)


def check_out_dir(path: str | Path, key: str = "out_dir") -> Path:
    """``path`` as a directory that exists and can be written (created if need be), or a located error naming
    ``key``. Nothing else is written."""
    where = Span(key, 0, 0)
    out = Path(path).expanduser()
    absolute = Path(os.path.abspath(out))
    real = absolute.resolve()
    for root in SYSTEM_ROOTS:
        if real == root or root in real.parents:
            raise ArchError(f"{path} is inside {root}, a kernel file system, not a place for outputs", where,
                            hint="pick a directory of your own, e.g. out_dir=build/run")
    if out.exists() and not out.is_dir():
        raise ArchError(f"{path} is a file, not a directory", where, hint="pick another out_dir, or move the file")
    for parent in absolute.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ArchError(f"{path} lies under {parent}, which is a file, not a directory", where,
                                hint="pick another out_dir")
            break
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ArchError(f"cannot create {path}: {err.strerror or err}", where,
                        hint="pick a directory you can write, e.g. out_dir=build/run") from err
    if not os.access(out, os.W_OK | os.X_OK):
        raise ArchError(f"cannot write to {path}", where, hint="pick a directory you can write")
    return out


class RunLock:
    """An exclusive ``flock`` on ``OUT/.run.lock`` holding the holder's pid; released by ``release`` or by the
    kernel when the process ends in any way."""

    def __init__(self, out: Path, key: str = "out_dir") -> None:
        self.path = out / LOCK_FILE
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise ArchError(f"cannot write to {out}: {err.strerror or err}", Span(key, 0, 0),
                            hint="pick a directory you can write") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ArchError(f"{out} is in use by another run (pid {holder}): one run per directory at a time",
                            Span(key, 0, 0), hint="wait for that run to end (or stop it), or use another "
                            "out_dir") from err
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd: int | None = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the lock; the file stays (removing it would race)
            self.fd = None


def claim(path: str | Path, key: str = "out_dir") -> RunLock:
    """Check ``path`` (see ``check_out_dir``) and take its lock."""
    return RunLock(check_out_dir(path, key), key)


class RunDirectory(Callback):
    """Hydra callback (conf/config.yaml): before a run starts, check its directory (``out_dir``, else Hydra's run
    directory) and lock it until the run ends. A refusal is one message and exit status 2."""

    def __init__(self) -> None:
        self.lock: RunLock | None = None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if launch_rank() != 0:  # one of several copies of the command (torchrun): rank 0 holds the directory
            return
        given = config.get("out_dir")
        key, path = ("out_dir", given) if given else ("hydra.run.dir", config.hydra.run.dir)
        try:
            self.lock = claim(str(path), key)
        except ArchError as err:
            # Hydra turns a callback's exceptions into warnings and goes on: a user mistake must stop the run here
            print(err, file=sys.stderr)
            raise SystemExit(2) from None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        r"""A sweep whose jobs would all write into one ``out_dir`` is refused before its first job (the second
        would find the first's run there and stop). An ``out_dir`` swept itself, or built from swept values
        (``out_dir=runs/seed${seed}``), gives each job its own."""
        task_overrides = [str(o) for o in config.hydra.overrides.task]
        swept = any(o.key_or_group.lstrip("+") == "out_dir" and o.is_sweep_override()
                    for o in OverridesParser.create().parse_overrides(task_overrides))
        if swept or OmegaConf.is_interpolation(config, "out_dir") or not config.get("out_dir"):
            return
        err = ArchError("a sweep (-m) runs several jobs, and they cannot share one out_dir",
                        Span("out_dir", 0, 0), hint="leave out_dir out: each job gets its own directory under "
                        "hydra.sweep.dir (multirun/DATE/TIME/N; set hydra.sweep.dir=D to choose it), or give each "
                        "its own, e.g. 'out_dir=runs/seed${seed}'")
        print(err, file=sys.stderr)
        raise SystemExit(2)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def output_dir(cfg: DictConfig) -> Path:
    """``out_dir`` if given (checked: a directory that can be written, created if need be), else Hydra's run (or
    multirun job) directory."""
    if cfg.get("out_dir"):
        return check_out_dir(str(cfg.out_dir))
    from hydra.core.hydra_config import HydraConfig
    return Path(HydraConfig.get().runtime.output_dir)
