"""What a search prints and leaves: log lines above the progress bar, the same "best of" line after a resume, a
sweep's summary table, several objectives through the command line, and DARTS refusing them."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
from conftest import run_cli

from compiler.errors import ArchError
from compiler.space import load_space_file
from search.evaluators.base import EvaluatorBase
from search.loop import SearchLoop
from search.objectives import ObjectiveSet
from search.strategies.random_search import RandomSearch
from search.tasks.sweep_summary import JobSummary, collect, render

ROOT = Path(__file__).resolve().parents[1]
TABLE_RUN = ["space=nb201", "evaluator=table", "search.progress=false", "task.export_best=false"]


class LoggingEvaluator(EvaluatorBase):
    """Logs like the trainer does each epoch, and notes which handlers the root logger has at that moment."""

    def __init__(self) -> None:
        self.handlers: list[str] = []

    def __call__(self, genotype, space) -> dict:  # noqa: ANN001
        self.handlers = [type(h).__name__ for h in logging.getLogger().handlers]
        logging.getLogger("search.training.trainer").info("epoch 1/1 of %s", list(genotype))
        return {"accuracy": sum(genotype) / 30, "status": "ok"}


def test_log_lines_go_through_the_progress_bar(tmp_path, capsys):
    console = logging.StreamHandler(sys.stderr)  # as Hydra's console handler: a stream handler on the root logger
    root = logging.getLogger()
    root.addHandler(console)
    saved = root.level
    root.setLevel(logging.INFO)
    try:
        space = load_space_file(str(ROOT / "examples" / "spaces" / "nb201.arch"))
        objectives = ObjectiveSet.coerce("accuracy")
        evaluator = LoggingEvaluator()
        SearchLoop(space, RandomSearch(space, seed=0, objectives=objectives), evaluator, objectives, 3, tmp_path,
                   progress=True).run()
        assert "_TqdmLoggingHandler" in evaluator.handlers and "StreamHandler" not in evaluator.handlers
        assert console in root.handlers  # given back after the loop
    finally:
        root.removeHandler(console)
        root.setLevel(saved)
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if "epoch 1/1" in line]
    assert len(lines) == 3 and all(line.startswith("epoch 1/1") for line in lines)  # never after a bar's text


def _search(capsys, *overrides: str) -> str:
    """`python -m compiler +search=... OVERRIDES` in this process (composed as Hydra does): what it prints."""
    from hydra import compose, initialize_config_dir

    from search.tasks.search import search_task
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    capsys.readouterr()
    assert search_task(cfg) == 0
    return capsys.readouterr().out


def _best_line(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("best of "))


def test_best_line_after_a_resume_equals_the_uninterrupted_one(tmp_path, capsys):
    """A resumed run reads its records back from history.jsonl (keys sorted); the line keeps the space's order of
    decisions and the objectives' order of metrics. digits: its decisions are not in alphabetical order."""
    args = ["+search=random", "evaluator=cost", "objective=acc_params", "objective.objectives.0.name=macs",
            "objective.objectives.0.direction=min", "search.progress=false", "task.export_best=false"]
    line = _best_line(_search(capsys, *args, "search.budget=8", f"out_dir={tmp_path / 'whole'}"))
    _search(capsys, *args, "search.budget=6", f"out_dir={tmp_path / 'resumed'}")  # the best is evaluation 5 of 8
    assert _best_line(_search(capsys, *args, "search.budget=8", f"out_dir={tmp_path / 'resumed'}")) == line
    assert line.index("macs=") < line.index("params=") and line.index("(width=") < line.index("stage1_block=")


def test_acc_params_changes_what_evolution_proposes(tmp_path, capsys):
    """The issue: with objective=acc_params evolution proposed exactly the genotypes of objective=accuracy."""
    runs = {}
    for objective in ("accuracy", "acc_params"):
        _search(capsys, "+search=evolution", *TABLE_RUN, "seed=0", f"objective={objective}",
                f"out_dir={tmp_path / objective}")
        history = (tmp_path / objective / "history.jsonl").read_text().splitlines()
        runs[objective] = [json.loads(line)["genotype"] for line in history]
        report = (tmp_path / objective / "report.md").read_text()
        assert ("pareto.png" in report) == (objective == "acc_params")
    assert len(runs["acc_params"]) == 20 and runs["acc_params"] != runs["accuracy"]


def test_darts_refuses_several_objectives(tmp_path):
    from hydra import compose, initialize_config_dir

    from search.tasks.search import search_task
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["+search=darts", "objective=acc_params", f"out_dir={tmp_path}"])
    with pytest.raises(ArchError, match="DARTS descends one loss") as err:
        search_task(cfg)
    assert str(err.value).startswith("objective: error:") and "search.cost.weight" in str(err.value)


def test_a_failed_final_training_ends_the_search_with_status_1(tmp_path, capsys):
    """As DARTS' derived network always did, every strategy's best one: a final training that fails is no success."""
    from hydra import compose, initialize_config_dir

    from search.tasks.search import search_task
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["+search=random", "search.budget=1", "search.progress=false",
                                           "evaluator.search_overrides.budget.epochs=1",
                                           "evaluator.final_overrides.budget.epochs=1",
                                           "+evaluator.final_overrides.optimizer.lr=1e12", f"out_dir={tmp_path}"])
    assert search_task(cfg) == 1
    out = capsys.readouterr().out
    assert "the best architecture failed its final training: the training loss became nan" in out
    assert json.loads((tmp_path / "best" / "metrics.json").read_text())["status"] != "ok"
    assert not (tmp_path / "best" / "weights.pt").exists()


def test_sweep_ends_with_a_summary_of_its_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "+search=evolution,random", "objective=acc_params", "space=nb201", "evaluator=table",
                   "++search.budget=3", "++search.progress=false", "++task.export_best=false",
                   f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout[proc.stdout.index("| job | overrides |"):]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| job")]
    assert [row.split(" | ")[:3] for row in rows] == [["| 0", "+search=evolution", "ok"],
                                                      ["| 1", "+search=random", "ok"]]
    assert "overrides of every job: objective=acc_params space=nb201" in proc.stdout
    saved = json.loads((sweep / "summary.json").read_text())
    assert (sweep / "summary.md").read_text().count("| ok |") == 2
    for job, row in zip(saved, rows):  # the best metrics as each job's pareto.json marks them: read, not recomputed
        best = next(e for e in json.loads((sweep / str(job["job"]) / "pareto.json").read_text()) if e["best"])
        assert job["metrics"] == {"accuracy": best["metrics"]["accuracy"], "params": best["metrics"]["params"]}
        assert job["directory"] == str(sweep / str(job["job"])) and job["directory"] in row


def test_summary_of_jobs_that_left_no_results_or_trained(tmp_path):
    def job(num: int, overrides: list[str]) -> Path:
        folder = tmp_path / str(num)
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "hydra.yaml").write_text(
            f"hydra:\n  job: {{num: {num}}}\n  runtime: {{output_dir: {folder}}}\n  overrides: {{task: {overrides}}}\n")
        (folder / ".hydra" / "config.yaml").write_text("out_dir: null\n")
        return folder

    (job(1, ["task=train", "trainer.lr=0.1"]) / "metrics.json").write_text(
        json.dumps({"status": "ok", "test_acc": 0.99, "val_acc": 0.98, "params": 1234, "macs": 5}))
    job(0, ["task=train", "trainer.lr=9"])
    jobs = collect(tmp_path, {str(tmp_path / "0"): "failed: diverged"})
    assert jobs == [JobSummary(0, ["task=train", "trainer.lr=9"], "failed: diverged", {}, str(tmp_path / "0")),
                    JobSummary(1, ["task=train", "trainer.lr=0.1"], "ok",
                               {"test_acc": 0.99, "val_acc": 0.98, "params": 1234}, str(tmp_path / "1"))]
    assert "| 1 | trainer.lr=0.1 | ok | test_acc=0.99, val_acc=0.98, params=1,234 |" in render(jobs)
