"""End to end: the main job (`python -m compiler +search=...`) on digits, its outputs, and resume after SIGKILL."""
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

FAST = ["search.budget=4", "evaluator.search_overrides.budget.epochs=3", "search.progress=false"]


def _essence(out: Path) -> list[tuple]:
    lines = (out / "history.jsonl").read_text().splitlines()
    return [(tuple(r["genotype"]), r["status"], r["metrics"].get("accuracy"), r["arch"])
            for r in map(json.loads, lines)]


def test_main_job_writes_a_real_best_model(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_cli("+search=evolution", *FAST, "evaluator.final_overrides.budget.epochs=15", f"out_dir={out}",
                   "export=[pt2]")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ["history.jsonl", "pareto.json", "report.md", "progress.png", "config.yaml",
                 "best/arch.arch", "best/model.py", "best/summary.json", "best/weights.pt", "best/metrics.json",
                 "best/model.pt2", "best/exports.json"]:
        assert (out / name).is_file(), name
    assert not (out / "pareto.png").exists()  # one objective: no front to draw
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert len(history) == 4 and all({"genotype", "arch", "metrics", "status", "seconds"} <= set(r) for r in history)
    final = json.loads((out / "best" / "metrics.json").read_text())
    assert final["status"] == "ok" and final["test_acc"] >= 0.9
    # The weights load into the standalone model.py (no import of this project) and give the same test accuracy.
    check = subprocess.run([sys.executable, "-c", _accuracy_script(out)], capture_output=True, text=True,
                           timeout=300, cwd=tmp_path)
    assert check.returncode == 0, check.stderr[-3000:]
    assert abs(float(check.stdout.strip()) - final["test_acc"]) < 1e-9
    # the exported program holds the trained weights: it scores the same
    exported = subprocess.run([sys.executable, "-c", _accuracy_script(out, exported=True)], capture_output=True,
                              text=True, timeout=300, cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert abs(float(exported.stdout.strip()) - final["test_acc"]) < 1e-9
    report = (out / "report.md").read_text()
    assert "## Best architecture" in report and "![progress.png](progress.png)" in report


def _accuracy_script(out: Path, exported: bool = False) -> str:
    """Load best/model.py and weights.pt (or the exported best/model.pt2) with torch alone, then score the digits
    test split."""
    load = (f"model = torch.export.load({str(out / 'best' / 'model.pt2')!r}).module()" if exported else f"""
spec = importlib.util.spec_from_file_location("m", {str(out / 'best' / 'model.py')!r})
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
model = m.build_model(); model.load_state_dict(torch.load({str(out / 'best' / 'weights.pt')!r})); model.eval()""")
    return f"""
import importlib.util, sys, torch
{load}
assert 'compiler' not in sys.modules and 'search' not in sys.modules
sys.path.insert(0, {str(ROOT)!r})
import yaml
from search.data import DeviceLoader, load_dataset
data = load_dataset(yaml.safe_load(open({str(ROOT / 'conf' / 'dataset' / 'digits.yaml')!r})))
correct = 0
with torch.no_grad():
    for x, y in DeviceLoader(data.test, 1000, "cpu", data.mean, data.std):
        correct += int((model(x).argmax(1) == y).sum())
print(correct / len(data.test))
"""


@pytest.mark.slow
def test_resume_after_sigkill_mid_training_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    args = ["+search=evolution", "search.budget=4", "evaluator.search_overrides.budget.epochs=3",
            "search.progress=false", "task.export_best=false"]
    reference = run_cli(*args, f"out_dir={tmp_path / 'ref'}")
    assert reference.returncode == 0, reference.stderr[-3000:]
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "compiler", *args, f"out_dir={out}"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = out / "history.jsonl"
    wait_for_lines(journal, 2, proc, timeout=240)
    time.sleep(0.3)  # into the training of the next candidate
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(journal.read_text().splitlines())
    assert 2 <= done < 4, "the kill should land mid-run"
    resumed = run_cli(*args, f"out_dir={out}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _essence(out) == _essence(tmp_path / "ref")


def _sweep(tmp_path: Path, name: str, *launcher: str) -> list[list]:
    proc = run_cli("-m", "+search=evolution,random", "seed=0,1", "space=nb201", "evaluator=table",
                   "++search.budget=3", "++search.progress=false", "++task.export_best=false",
                   f"hydra.sweep.dir={tmp_path / name}", *launcher, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted((tmp_path / name).glob("*/history.jsonl"), key=lambda path: int(path.parent.name))
    assert len(jobs) == 4
    return [[json.loads(line)["genotype"] for line in job.read_text().splitlines()] for job in jobs]


def test_multirun_sweep_gives_each_job_its_own_directory(tmp_path: Path) -> None:
    runs = _sweep(tmp_path, "sweep")
    assert all(len(r) == 3 for r in runs)
    assert runs[0] != runs[1]  # seeds 0 and 1 differ
    # the same sweep with its jobs run two at a time by Hydra's joblib launcher: the same four runs
    assert _sweep(tmp_path, "parallel", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2") == runs


def test_space_is_specialised_only_through_parameters_it_declares(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from search.tasks.search import build_space
    arch = tmp_path / "no_classes.arch"
    arch.write_text("model s() { input x: [3, 32, 32]\n output x -> conv([4 | 8], 3) -> global_avgpool -> flatten }")
    data = SimpleNamespace(input_shape=(1, 8, 8), num_classes=10)
    space = build_space(OmegaConf.create({"space": {"arch": str(arch), "params": {}}}), SimpleNamespace(data=data))
    assert space.params == {} and space.compile((1,)).summary["input_shape"] == [1, 8, 8]
    digits = build_space(OmegaConf.create({"space": {"arch": str(ROOT / "examples/spaces/digits.arch"),
                                                     "params": {"num_classes": 3}}}), SimpleNamespace(data=data))
    assert digits.params == {"num_classes": 3, "in_channels": 1, "size": 8}  # the user's override wins
