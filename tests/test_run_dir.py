"""Run directories: nothing in them runs, damage is a located error that changes nothing, one run at a time,
resume only with the same configuration, out_dir checked first, and nothing written outside out_dir."""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from compiler.errors import ArchError
from compiler.run_dir import LOCK_FILE, claim, check_out_dir
from conftest import ROOT, run_cli
from search.darts.bilevel import read_checkpoint
from search.journal import Journal
from search.run_config import config_changes, start_run
from test_loop import _loop

TABLE_SEARCH = ["+search=evolution", "space=nb201", "evaluator=table", "search.progress=false",
                "task.export_best=false"]


class Payload:
    """What a hostile checkpoint holds: unpickling it would create ``marker`` (if anything unpickled it)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return os.system, (f"touch {self.marker}",)


# ---- 1. nothing in a run directory runs -------------------------------------------------------------------

def test_a_malicious_darts_checkpoint_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    out, marker = tmp_path / "run", tmp_path / "pwned"
    out.mkdir()
    torch.save({"version": 1, "model": Payload(marker)}, out / "darts_state.pt")
    proc = run_cli("+search=darts", "search.epochs=1", "search.progress=false", f"out_dir={out}")
    assert not marker.exists()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"{out / 'darts_state.pt'}: error: refused: it holds Python objects other than tensors" in proc.stderr
    # the plain pickle form (not torch's zip) is refused alike, and a damaged file is a clear error too
    (out / "darts_state.pt").write_bytes(pickle.dumps(Payload(marker), protocol=2))
    with pytest.raises(ArchError, match="refused"):
        read_checkpoint(out / "darts_state.pt")
    assert not marker.exists()
    (out / "darts_state.pt").write_bytes(bytes(range(7, 107)))   # bytes that are no pickle: damaged, not hostile
    with pytest.raises(ArchError, match=r"damaged or not a DARTS checkpoint \(it is no pickle of tensors") as info:
        read_checkpoint(out / "darts_state.pt")
    assert "refused" not in str(info.value) and "delete it to start the search anew" in str(info.value)
    (out / "darts_state.pt").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ArchError, match="damaged or not a DARTS checkpoint"):
        read_checkpoint(out / "darts_state.pt")
    torch.save({"version": 1, "model": {}}, out / "darts_state.pt")
    with pytest.raises(ArchError, match="not a DARTS checkpoint .missing or wrong: identity, epochs_done"):
        read_checkpoint(out / "darts_state.pt")


# ---- 2. the journal never loses a record ------------------------------------------------------------------

def _journal(tmp_path: Path, records: int = 3) -> Path:
    out = tmp_path / "run"
    _loop(out, budget=records).run()
    return out


@pytest.mark.parametrize("bad, message", [
    ("garbage{", "history.jsonl:2:1: error: not a JSON line"),
    ("42", "history.jsonl:2:1: error: not a record: a JSON int, not an object"),
    ("{}", "history.jsonl:2:1: error: not a record: missing index, genotype"),
    ('{"index": 1, "genotype": [1], "decisions": {}, "arch": "", "metrics": [], "status": "ok"}',
     "history.jsonl:2:1: error: not a record: wrong type of metrics (list)"),
    ("[" * 100_000, "history.jsonl:2:1: error: not a JSON line (nested too deeply)"),
])
def test_a_bad_line_before_the_last_stops_the_resume_and_changes_nothing(tmp_path: Path, bad: str,
                                                                          message: str) -> None:
    out = _journal(tmp_path)
    journal = out / "history.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    damaged = lines[0] + bad + "\n" + "".join(lines[1:])
    journal.write_text(damaged)
    with pytest.raises(ArchError) as info:
        _loop(out, budget=5).run()
    assert message in str(info.value)
    assert journal.read_text() == damaged  # no record truncated away, nothing appended


def test_only_a_torn_last_line_is_dropped(tmp_path: Path) -> None:
    out = _journal(tmp_path)
    journal = out / "history.jsonl"
    with journal.open("a") as handle:
        handle.write('{"index": 3, "genot')
    assert len(Journal(journal).read()) == 3 and len(journal.read_text().splitlines()) == 3
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text(lines[0] + lines[2] + lines[1])  # moved records are no journal of this run
    with pytest.raises(ArchError, match=r"history.jsonl:2:1: error: record index 2 where 1 was expected"):
        Journal(journal).read()


@pytest.mark.parametrize("content, message", [
    ("{not json", "checkpoint.json:1:2: error: not valid JSON"),
    ("[]", "checkpoint.json: error: not a search checkpoint"),
    ("{}", "checkpoint.json: error: not a search checkpoint"),
    ('{"evaluations": 1, "search": {}, "identity": {}}', "checkpoint.json: error: not a search checkpoint"),
    ('{"evaluations": "x", "search": {}, "identity": {}, "in_flight": []}', "bad evaluations"),
    (b'{"evaluations": 1,\n "x": "caf\xe9"}', "checkpoint.json:2:11: error: not valid JSON (not UTF-8 text)"),
    ("[" * 100_000, "checkpoint.json:1:1: error: not valid JSON (nested too deeply)"),
])
def test_a_corrupt_checkpoint_is_a_clear_error(tmp_path: Path, content: str | bytes, message: str) -> None:
    out = _journal(tmp_path)
    (out / "checkpoint.json").write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ArchError) as info:
        _loop(out, budget=5).run()
    assert message in str(info.value)
    assert len((out / "history.jsonl").read_text().splitlines()) == 3


def test_cli_reports_a_damaged_run_directory_in_one_message(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run_cli(*TABLE_SEARCH, "search.budget=3", f"out_dir={out}").returncode == 0
    (out / "checkpoint.json").write_text("[]")
    proc = run_cli(*TABLE_SEARCH, "search.budget=3", f"out_dir={out}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"{out / 'checkpoint.json'}: error: not a search checkpoint")


# ---- 3. one run per directory -----------------------------------------------------------------------------

HOLD = "import sys, time\nfrom compiler.run_dir import claim\nlock = claim(sys.argv[1])\nprint('held', flush=True)\n" \
       "time.sleep(600)"


def test_a_second_run_on_a_directory_in_use_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        # a run that waited for the lock would hit run_cli's timeout (300 s) before the holder's 600 s sleep ends
        proc = run_cli(*TABLE_SEARCH, "search.budget=3", f"out_dir={out}")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert f"out_dir: error: {out} is in use by another run (pid {holder.pid})" in proc.stderr
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # refused before Hydra wrote anything
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the kernel dropped the lock with the killed holder: the directory is free again, and the run does all its work
    proc = run_cli(*TABLE_SEARCH, "search.budget=3", f"out_dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len((out / "history.jsonl").read_text().splitlines()) == 3


def test_the_lock_is_exclusive_within_a_process_too(tmp_path: Path) -> None:
    lock = claim(tmp_path / "o")
    assert (tmp_path / "o" / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    with pytest.raises(ArchError, match=f"in use by another run \\(pid {os.getpid()}\\)"):
        claim(tmp_path / "o")
    lock.release()
    claim(tmp_path / "o").release()


# ---- 4. resume only with the same configuration -------------------------------------------------------------

def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=["+search=evolution", *overrides])


def test_resume_compares_the_whole_configuration(tmp_path: Path) -> None:
    start_run(tmp_path, _compose("search.budget=10"))
    first = (tmp_path / "config.yaml").read_text()
    (tmp_path / "history.jsonl").write_text("")  # the run has started
    with pytest.raises(ArchError) as info:
        start_run(tmp_path, _compose("search.budget=10", "evaluator.search_overrides.budget.epochs=1", "seed=3"))
    text = str(info.value)
    assert "evaluator.search_overrides.budget.epochs: 8 -> 1" in text and "seed: 0 -> 3" in text
    assert "search.budget" not in text.split("hint:")[0]
    assert (tmp_path / "config.yaml").read_text() == first  # not overwritten by the refused configuration
    with pytest.raises(ArchError, match=r"search.budget: 10 -> 5 \(may only grow\)"):
        start_run(tmp_path, _compose("search.budget=5"))
    # what may change on resume: a larger budget, workers, display, exports, out_dir
    start_run(tmp_path, _compose("search.budget=20", "search.workers=2", "search.progress=false", "export=[onnx]",
                                 f"out_dir={tmp_path}", "task.export_best=false"))
    assert json.loads((tmp_path / "run.json").read_text())["config"]["search"]["budget"] == 20
    with pytest.raises(ArchError, match=r"search.budget: 20 -> 10"):
        start_run(tmp_path, _compose("search.budget=10"))


def test_a_run_that_recorded_nothing_takes_the_new_configuration(tmp_path: Path) -> None:
    start_run(tmp_path, _compose("seed=1"))
    start_run(tmp_path, _compose("seed=2"))  # no history, no checkpoint: nothing to mix
    assert json.loads((tmp_path / "run.json").read_text())["config"]["seed"] == 2
    (tmp_path / "run.json").write_text("[1]")
    (tmp_path / "checkpoint.json").write_text("{}")
    with pytest.raises(ArchError, match="run.json: error: not a run record"):
        start_run(tmp_path, _compose("seed=2"))


def test_config_changes_lists_each_difference() -> None:
    old = {"a": {"b": 1, "c": [1, 2]}, "d": "x"}
    assert config_changes(old, {"a": {"b": 2, "c": [1, 2]}, "e": None}) == [
        "a.b: 1 -> 2", 'd: "x" -> (absent)', "e: (absent) -> null"]
    assert config_changes(old, old) == []


def test_a_key_added_since_a_run_was_made_reads_as_what_the_run_did() -> None:
    """search.include_default (added 2026-12-07, default false) is absent from older run.json files: they resume;
    asking the resumed run for the new behaviour is still a change."""
    old = {"search": {"budget": 3}, "trainer": {"lr": 0.1}}
    new = {"search": {"budget": 3, "include_default": False}, "trainer": {"lr": 0.1, "log_epochs": True}}
    assert config_changes(old, new) == []
    assert config_changes(old, {**new, "search": {"budget": 3, "include_default": True}}) == [
        "search.include_default: false -> true"]
    assert config_changes({"search": {"include_default": True}}, {"search": {"budget": 3}}) == [   # the other way
        "search.budget: (absent) -> 3 (may only grow)",
        "search.include_default: true -> (absent)"]
    assert config_changes(old, {**new, "trainer": {"lr": 0.1, "log_epochs": False}}, allowed=True) == []


def test_cli_refuses_to_resume_with_another_configuration(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run_cli(*TABLE_SEARCH, "search.budget=3", f"out_dir={out}").returncode == 0
    history, config = (out / "history.jsonl").read_text(), (out / "config.yaml").read_text()
    proc = run_cli(*TABLE_SEARCH, "search.budget=3", "search.strategy.population_size=5", f"out_dir={out}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "search.strategy.population_size: 10 -> 5" in proc.stderr
    assert (out / "history.jsonl").read_text() == history and (out / "config.yaml").read_text() == config
    grown = run_cli(*TABLE_SEARCH, "search.budget=5", f"out_dir={out}")  # a larger budget continues the run
    assert grown.returncode == 0, grown.stderr[-2000:]
    assert (out / "history.jsonl").read_text().startswith(history)
    assert len((out / "history.jsonl").read_text().splitlines()) == 5


# ---- 6. out_dir checked before any work ---------------------------------------------------------------------

@pytest.mark.parametrize("where, message", [
    ("/proc/automl_out", "is inside /proc, a kernel file system"),
    ("FILE", "is a file, not a directory"),
    ("FILE/sub", "which is a file, not a directory"),
    ("/sys/automl_out", "is inside /sys, a kernel file system"),
])
def test_a_bad_out_dir_is_refused_before_any_work(tmp_path: Path, where: str, message: str) -> None:
    (tmp_path / "FILE").write_text("keep me")
    out = where.replace("FILE", str(tmp_path / "FILE"))
    with pytest.raises(ArchError, match=message):
        check_out_dir(out)
    proc = run_cli(f"arch={ROOT / 'examples' / 'resnet20.arch'}", f"out_dir={out}", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"out_dir: error: {out} ") and message in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FILE"] and (tmp_path / "FILE").read_text() == "keep me"


# ---- 7. nothing outside out_dir ----------------------------------------------------------------------------

def test_nothing_is_written_outside_out_dir(tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    arch = f"arch={ROOT / 'examples' / 'resnet20.arch'}"
    assert run_cli(arch, f"out_dir={tmp_path / 'o'}", cwd=cwd).returncode == 0
    assert list(cwd.iterdir()) == []
    inside = {p.name for p in (tmp_path / "o").iterdir()}
    assert {"model.py", ".hydra", "__main__.log"} <= inside  # Hydra's own files go into out_dir
    assert run_cli(arch, cwd=cwd).returncode == 0  # no out_dir: the documented outputs/DATE/TIME/ only
    assert [p.name for p in cwd.iterdir()] == ["outputs"]
    (run,) = cwd.glob("outputs/*/*")
    assert (run / "model.py").is_file() and (run / ".hydra" / "config.yaml").is_file()


def test_a_sweep_still_writes_its_jobs_under_multirun(tmp_path: Path) -> None:
    proc = run_cli("-m", "+search=evolution", "space=nb201", "evaluator=table", "seed=0,1", "++search.budget=2",
                   "++search.progress=false", "++task.export_best=false", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [p.name for p in tmp_path.iterdir()] == ["multirun"]
    jobs = sorted(p.parent.name for p in tmp_path.glob("multirun/*/*/*/history.jsonl"))
    assert jobs == ["0", "1"]


def test_a_sweep_whose_jobs_would_share_one_out_dir_is_refused_before_its_first_job(tmp_path: Path) -> None:
    sweep = ["-m", "+search=random", "space=nb201", "evaluator=table", "seed=0,1", "++search.budget=2",
             "++search.progress=false", "++task.export_best=false"]
    proc = run_cli(*sweep, "out_dir=shared", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "out_dir: error: a sweep (-m) runs several jobs, and they cannot share one out_dir" in proc.stderr
    assert list(tmp_path.iterdir()) == []   # no job ran
    # an out_dir built from a swept value gives each job its own; the sweep's table reads each job's results there
    proc = run_cli(*sweep, "out_dir=runs/s${seed}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["s0", "s1"]
    (summary,) = tmp_path.glob("multirun/*/*/summary.json")
    rows = json.loads(summary.read_text())
    assert [r["directory"] for r in rows] == ["runs/s0", "runs/s1"] and all("accuracy" in r["metrics"] for r in rows)
