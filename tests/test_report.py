"""report.md, pareto.json and plots: the best on the front, one column per metric, no front for one objective,
readable booleans, and the same order of metrics and decisions whatever order the records hold them in."""
from __future__ import annotations

import json
import logging
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


class TrainedEvaluator:
    """Stands in for the train evaluator's final run: metrics with booleans, as the trainer reports them."""

    def final(self, genotype, space, out: Path) -> dict:  # noqa: ANN001
        return {"val_acc": 0.98, "channels_last": False, "compile": True, "epochs": 3}


def test_two_objectives_report_the_best_on_the_front_with_distinct_columns(tmp_path):
    summary = write_report(_records(), SPACE, TrainedEvaluator(), ACC_PARAMS, tmp_path)
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
    summary = write_report(_records(), SPACE, TrainedEvaluator(), ObjectiveSet.coerce("accuracy"), tmp_path,
                           export=False)
    assert summary["best"]["index"] == 0  # the best accuracy, the earliest on a tie
    report = (tmp_path / "report.md").read_text()
    assert not (tmp_path / "pareto.png").exists() and (tmp_path / "progress.png").exists()
    assert "pareto.png" not in report and "## Pareto front" not in report
    assert "One objective, so no Pareto front is drawn" in report
    assert "| # | accuracy | params | decisions |" in report
    assert [e["index"] for e in json.loads((tmp_path / "pareto.json").read_text())] == [0, 3]


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
