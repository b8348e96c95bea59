"""Sweeps through Hydra's submitit launcher (conf/hydra/launcher/submitit_*.yaml): `submitit_local` runs a sweep's
jobs as the SLURM launcher does (pickled jobs, scheduler signals, requeue), on this machine. A job preempted as SLURM
preempts it (USR2) is requeued, lands in its own directory again and resumes its search from the journal."""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compiler.cli_checks import SUBMITIT_PLUGIN, check_launcher
from conftest import ROOT, run_cli

# the sweeps skip only when the plugin is not installed; the message without it is tested either way
needs_submitit = pytest.mark.skipif(
    importlib.util.find_spec("submitit") is None or importlib.util.find_spec(SUBMITIT_PLUGIN) is None,
    reason="hydra-submitit-launcher is not installed: pip install -e '.[slurm]' (the dev extra has it)")

SEARCH = ["+search=random", "++search.budget=4", "++search.progress=false", "++task.export_best=false"]


def _history(directory: Path) -> list[tuple]:
    return [(tuple(r["genotype"]), r["status"], r["metrics"].get("accuracy"))
            for r in map(json.loads, (directory / "history.jsonl").read_text().splitlines())]


@needs_submitit
@pytest.mark.slow
def test_a_submitit_local_sweep_of_two_jobs_writes_both_run_directories(tmp_path: Path) -> None:
    proc = run_cli("-m", "hydra/launcher=submitit_local", *SEARCH, "space=nb201", "evaluator=table", "seed=0,1",
                   cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "validated against ConfigStore schema" not in proc.stderr  # (the documented files' deprecation warning)
    sweep, = tmp_path.glob("multirun/*/*")
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == ["0", "1"]
    for job in ("0", "1"):
        assert len(_history(sweep / job)) == 4 and (sweep / job / "pareto.json").exists()
    assert (sweep / ".submitit").is_dir()  # the jobs went through submitit (pickles and logs)
    summary = json.loads((sweep / "summary.json").read_text())
    assert [row["status"] for row in summary] == ["ok", "ok"]


def _job_processes(folder: Path) -> list[int]:
    """The submitit job processes of a sweep (``python -u -m submitit.core._submit FOLDER/.submitit/ID``)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            command = cmdline.read_bytes()
        except OSError:
            continue
        if b"submitit.core._submit" in command and str(folder).encode() in command:
            found.append(int(cmdline.parent.name))
    return found


@needs_submitit
@pytest.mark.slow
def test_a_preempted_sweep_job_is_requeued_into_its_directory_and_resumes_from_its_journal(tmp_path: Path) -> None:
    args = [*SEARCH, "++evaluator.search_overrides.budget.epochs=6"]
    reference = run_cli(*args, "seed=0", f"out_dir={tmp_path / 'ref'}", timeout=600)
    assert reference.returncode == 0, reference.stderr[-3000:]
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONPATH": str(ROOT)}
    sweep_args = [sys.executable, "-m", "compiler", "-m", "hydra/launcher=submitit_local", *args, "seed=0,1"]
    proc = subprocess.Popen(sweep_args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 300
    while len(histories := list(tmp_path.glob("multirun/*/*/[01]/history.jsonl"))) < 2 or \
            any(not h.read_text() for h in histories):  # both jobs have recorded a candidate
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, "the sweep's jobs did not get going"
        time.sleep(0.1)
    jobs = _job_processes(tmp_path)
    assert len(jobs) == 2
    for pid in jobs:
        os.kill(pid, signal.SIGUSR2)  # what SLURM sends signal_delay_s before it preempts or times out a job
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    sweep, = tmp_path.glob("multirun/*/*")  # the requeued jobs came back to the same sweep directory
    job = sweep / "0"
    log = (job / "__main__.log").read_text() if (job / "__main__.log").exists() else ""
    submitit_logs = "".join(p.read_text() for p in sweep.glob(".submitit/*/*_log.*"))
    assert "this job is preempted" in submitit_logs and "Requeued job" in submitit_logs
    assert "resumed" in log and "evaluation(s) from" in log
    assert _history(job) == _history(tmp_path / "ref")  # nothing lost, nothing repeated
    assert len(_history(sweep / "1")) == 4


def test_a_submitit_launcher_without_the_plugin_is_one_line_naming_the_extra(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == SUBMITIT_PLUGIN else real(name, *a))
    check_launcher(["-m", "hydra/launcher=joblib", "seed=0,1"])  # another launcher: not this check's business
    with pytest.raises(SystemExit) as stopped:
        check_launcher(["-m", "hydra/launcher=submitit_slurm", "+search=random"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err == ("hydra/launcher: error: hydra/launcher=submitit_slurm needs Hydra's submitit "
                                       "launcher plugin, which is not installed\n  hint: install the extra: "
                                       "pip install -e '.[slurm]'\n")
