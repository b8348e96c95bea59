"""report.md, pareto.json and plots: the best on the front, one column per metric, no front for one objective,
readable booleans, and the same order of metrics and decisions whatever order the records hold them in. Reporting
reads results and writes files: it neither trains nor exports (the search task does, before it)."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

from compiler.space import load_space_file
from search.objectives import ObjectiveSet
from search.report import write_report

ROOT = Path(__file__).resolve().parents[1]
SPACE = load_space_file(str(ROOT / "examples" / "spaces" / "nb201.arch"))
ACC_PARAMS = ObjectiveSet.coerce({"objectives": ["accuracy", "min:params"]})
POINTS = [(0.9792, 20818), (0.9653, 13618), (0.9583, 2914), (0.9792, 8634), (0.9375, 1498)]  # 3 dominates 0


def _records() -> list[dict]:
    """As a resumed run reads them back from history.jsonl: keys sorted (json.dumps(sort_keys=True))."""
    out = []
    for i, (accuracy, params) in enumerate(POINTS):
        genotype = [i % 5, (i + 1) % 5, 3, 3, 1, i % 3]
        record = {"index": i, "genotype": genotype, "decisions": SPACE.describe(genotype), "arch": f"arch {i}",
                  "metrics": {"accuracy": accuracy, "macs": 10 * params, "params": params, "status": "ok"},
                  "status": "ok", "seconds": 0.5}
        out.append(json.loads(json.dumps(record, sort_keys=True)))
    for record in out:  # make the stored order visibly differ from the space's
        record["decisions"] = dict(reversed(list(record["decisions"].items())))
        record["metrics"] = dict(reversed(list(record["metrics"].items())))
    return out


# the train evaluator's final run of the best: metrics with booleans, as the trainer reports them
FINAL = {"val_acc": 0.98, "channels_last": False, "compile": True, "epochs": 3}


def test_two_objectives_report_the_best_on_the_front_with_distinct_columns(tmp_path):
    summary = write_report(_records(), SPACE, ACC_PARAMS, tmp_path, final=FINAL)
    assert summary["best"]["index"] == 3  # same accuracy as 0, fewer parameters
    report = (tmp_path / "report.md").read_text()
    assert "| # | accuracy | params | decisions |" in report  # was "| accuracy | params | params |"
    assert "Evaluation 3: accuracy = 0.9792, params = 8,634, macs = 86,340." in report  # objective order
    assert "highest accuracy, ties broken by params" in report
    order = [d.name for d in SPACE.decisions]
    decisions_line = next(line for line in report.splitlines() if line.startswith("Decisions: "))
    assert [part.split("`")[1] for part in decisions_line[len("Decisions: "):].split(", ")] == order
    assert "channels_last = false, compile = true" in report  # not 0 / 1
    front = json.loads((tmp_path / "pareto.json").read_text())
    assert [(e["index"], e["best"]) for e in front] == [(2, False), (3, True), (4, False)]
    assert list(front[0]["decisions"]) == order
    assert (tmp_path / "pareto.png").exists() and (tmp_path / "progress.png").exists()


def test_one_objective_draws_no_front(tmp_path):
    (tmp_path / "pareto.png").write_bytes(b"left by an earlier run")
    summary = write_report(_records(), SPACE, ObjectiveSet.coerce("accuracy"), tmp_path)
    assert summary["best"]["index"] == 0  # the best accuracy, the earliest on a tie
    report = (tmp_path / "report.md").read_text()
    assert not (tmp_path / "pareto.png").exists() and (tmp_path / "progress.png").exists()
    assert "pareto.png" not in report and "## Pareto front" not in report
    assert "One objective, so no Pareto front is drawn" in report
    assert "| # | accuracy | params | decisions |" in report
    assert [e["index"] for e in json.loads((tmp_path / "pareto.json").read_text())] == [0, 3]


def test_the_report_adds_the_search_to_the_exported_best_and_writes_nothing_else_there(tmp_path):
    best = tmp_path / "best"
    best.mkdir()
    (best / "summary.json").write_text(json.dumps({"params": 8634}))  # as exporting the best wrote it
    write_report(_records(), SPACE, ACC_PARAMS, tmp_path, final=FINAL, best_exported=True)
    summary = json.loads((best / "summary.json").read_text())
    assert summary["params"] == 8634 and summary["search"]["final"] == FINAL
    assert summary["search"]["genotype"] == _records()[3]["genotype"]
    assert list(summary["search"]["decisions"]) == [d.name for d in SPACE.decisions]
    assert sorted(p.name for p in best.iterdir()) == ["summary.json"]  # no model.py, no weights: not its job
    assert "Final training: val_acc = 0.98" in (tmp_path / "report.md").read_text()


def test_the_report_module_imports_no_task():
    code = "import sys, search.report; print(sorted(m for m in sys.modules if m.startswith('search.')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "search.report" in loaded and "search.tasks" not in loaded


def test_onnx_export_keeps_its_libraries_quiet_unless_asked(tmp_path, caplog):
    import torch

    from compiler.backends.export import LIBRARY_LOGGERS, export_model
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Flatten())
    with caplog.at_level(logging.INFO):
        export_model(model, [(1, 6, 6)], tmp_path / "quiet", ["onnx"])
    assert not [r for r in caplog.records if r.name.startswith(LIBRARY_LOGGERS)]
    caplog.clear()
    with caplog.at_level(logging.INFO):
        export_model(model, [(1, 6, 6)], tmp_path / "loud", ["onnx"], library_logs=True)
    assert [r for r in caplog.records if r.name.startswith(LIBRARY_LOGGERS)]  # what debug=true shows
    assert all(logging.getLogger(n).level == logging.NOTSET for n in LIBRARY_LOGGERS)  # levels restored
