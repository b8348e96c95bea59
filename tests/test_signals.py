"""SIGINT and SIGTERM end a real `python -m compiler` run with one line and status 130 / 143, stop the worker
processes, and leave a search that resumes to the history of an uninterrupted run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_cli, wait_for_lines

SEARCH = ["+search=evolution", "search.budget=4", "evaluator.search_overrides.budget.epochs=3", "search.progress=false",
          "task.export_best=false"]


def _default_signals() -> None:
    """In the child, before the program starts: SIGINT as a terminal gives it. A shell that runs the tests in the
    background (`pytest ... &` without job control) ignores SIGINT, its children inherit that, and the program rightly
    keeps an ignored signal ignored (as under nohup): the SIGINT cases would then test nothing and time out."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "0"}
    return subprocess.Popen([sys.executable, "-m", "compiler", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_default_signals)


def _workers(pid: int) -> list[int]:
    """The pool's worker processes among ``pid``'s children (not multiprocessing's resource tracker)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if parent == pid and b"spawn_main" in command:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _one_line(stderr: str, signame: str) -> str:
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr and len(lines) == 1, stderr[-3000:]
    assert lines[0].startswith(f"interrupted ({signame}): ")
    return lines[0]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_a_signal_ends_training_with_one_line(tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "r20"
    proc = _start("task=train", "arch=examples/resnet20.arch", "dataset=digits", f"out_dir={out}",
                  "trainer.budget.epochs=200", "trainer.cpu_threads=1", "trainer.progress=false")
    wait_for_lines(out / "train_log.jsonl", 1, proc)  # in the middle of the training
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig
    assert _one_line(stderr, sig.name) == f"interrupted ({sig.name}): the files written so far are in {out}"
    log = (out / "train_log.jsonl").read_text()
    assert log.endswith("\n") and all(json.loads(line)["epoch"] for line in log.splitlines())  # flushed, whole


def _essence(out: Path) -> list[tuple]:
    return [(tuple(r["genotype"]), r["status"], r["metrics"].get("accuracy"), r["arch"])
            for r in map(json.loads, (out / "history.jsonl").read_text().splitlines())]


@pytest.mark.slow
@pytest.mark.parametrize("sig, workers", [(signal.SIGINT, 2), (signal.SIGTERM, 1)], ids=["SIGINT-2", "SIGTERM-1"])
def test_an_interrupted_search_stops_its_workers_and_resumes_exactly(tmp_path: Path, sig: signal.Signals,
                                                                     workers: int) -> None:
    args = [*SEARCH, f"search.workers={workers}"]
    reference = run_cli(*args, f"out_dir={tmp_path / 'ref'}", timeout=900)
    assert reference.returncode == 0, reference.stderr[-3000:]
    out = tmp_path / "run"
    proc = _start(*args, f"out_dir={out}")
    wait_for_lines(out / "history.jsonl", 2, proc)
    time.sleep(0.3)  # into the training of the next candidates
    workers_seen = _workers(proc.pid)
    assert len(workers_seen) == (workers if workers > 1 else 0)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig
    assert _one_line(stderr, sig.name) == f"interrupted ({sig.name}): the run in {out} can be resumed with the same " \
                                          "command"
    assert not [pid for pid in workers_seen if _alive(pid)]  # no worker left training
    assert len(_essence(out)) < 4, "the signal should land mid-run"
    resumed = run_cli(*args, f"out_dir={out}", timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _essence(out) == _essence(tmp_path / "ref")
