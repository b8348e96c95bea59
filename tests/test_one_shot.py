"""DARTS in the one search frame: its derived architecture goes through the loop of every strategy (the loop alone
writes history.jsonl), a killed run resumes through the common path (the supernet's checkpoint, then the journal and
checkpoint.json) to the uninterrupted result, and the phase's end states (unevaluated, diverged) are handled there."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from compiler.errors import ArchError
from conftest import ROOT
from search.darts.bilevel import BilevelSearch
from search.evaluators.train import TrainEvaluator
from search.journal import Journal

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

TINY = ["+search=darts", "search.epochs=2", "search.progress=false", "evaluator.search_overrides.budget.epochs=1",
        "evaluator.final_overrides.budget.epochs=1"]


class Kill(BaseException):
    """Stands in for SIGKILL inside the process."""


def darts(out: Path, *overrides: str) -> int:
    """`python -m compiler +search=darts ...` in this process (composed as Hydra does); its exit status."""
    from hydra import compose, initialize_config_dir

    from search.tasks.search import search_task
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[*TINY, *overrides, f"out_dir={out}"])
    assert cfg.task._target_ == "search.tasks.search.search_task"  # DARTS is the search task's, like every strategy
    return search_task(cfg)


def lines(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]


TIMED = ("seconds", "time", "search_seconds", "train_time_s", "eval_time_s", "test_time_s", "images_per_s", "message")


def untimed(record: dict[str, Any]) -> dict[str, Any]:
    """A record (or metrics, or an epoch) without the wall times, which differ between two runs of one search."""
    return {k: untimed(v) if isinstance(v, dict) else v for k, v in record.items() if k not in TIMED}


def test_the_loop_alone_writes_darts_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every history line of a DARTS run is built and written by SearchLoop through Journal.add (the old DARTS task
    wrote its own record: this fails on it)."""
    writers: list[str] = []
    add = Journal.add

    def spy(self: Journal, *args: Any, **kwargs: Any) -> dict[str, Any]:
        caller = sys._getframe(1)
        writers.append(f"{caller.f_globals['__name__']}.{caller.f_code.co_name}")
        return add(self, *args, **kwargs)

    appended: list[str] = []
    append = Journal._append
    monkeypatch.setattr(Journal, "add", spy)
    monkeypatch.setattr(Journal, "_append", lambda self, record: (appended.append(sys._getframe(1).f_code.co_name),
                                                                  append(self, record))[1])
    out = tmp_path / "run"
    assert darts(out) == 0
    assert writers == ["search.loop.run"] and appended == ["add"]
    (record,) = lines(out)
    epochs = json.loads((out / "alphas.json").read_text())["epochs"]
    assert record["metrics"]["supernet_val_acc"] == epochs[-1]["val_acc"] and record["status"] == "ok"
    checkpoint = json.loads((out / "checkpoint.json").read_text())
    assert checkpoint["evaluations"] == 1 and checkpoint["identity"]["strategy"] == "Darts"
    strategy = checkpoint["search"]["strategy"]
    assert strategy["candidates"] == [record["genotype"]] and strategy["phase"] == {"checkpoint": "darts_state.pt",
                                                                                    "epochs_done": 2}
    summary = json.loads((out / "best" / "summary.json").read_text())
    assert summary["search"]["genotype"] == record["genotype"] and summary["search"]["final"]["status"] == "ok"
    assert (out / "best" / "weights.pt").is_file() and "## DARTS" in (out / "report.md").read_text()


@pytest.mark.slow   # ~30 s; plain DARTS resumes in the default run too (test_darts_variants)
def test_a_killed_darts_run_resumes_through_the_common_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert darts(tmp_path / "whole", "search.epochs=3") == 0
    out = tmp_path / "run"
    save = BilevelSearch.save

    def killed_after_first_epoch(self: BilevelSearch, epochs_done: int) -> None:
        save(self, epochs_done)
        if epochs_done == 1:
            raise Kill

    with monkeypatch.context() as patch:
        patch.setattr(BilevelSearch, "save", killed_after_first_epoch)
        with pytest.raises(Kill):
            darts(out, "search.epochs=3")
    assert torch.load(out / "darts_state.pt", weights_only=True)["epochs_done"] == 1
    assert not (out / "history.jsonl").exists()
    assert darts(out, "search.epochs=3") == 0  # epochs 2 and 3, then the loop's one candidate
    whole = [untimed(r) for r in lines(tmp_path / "whole")]
    assert [untimed(r) for r in lines(out)] == whole and len(whole) == 1
    alphas = [json.loads((d / "alphas.json").read_text())["epochs"] for d in (tmp_path / "whole", out)]
    assert [untimed(e) for e in alphas[0]] == [untimed(e) for e in alphas[1]] and len(alphas[0]) == 3
    finals = [json.loads((d / "best" / "metrics.json").read_text()) for d in (tmp_path / "whole", out)]
    assert untimed(finals[0]) == untimed(finals[1])

    # a kill between the journal line and checkpoint.json: the resumed run replays the line, evaluates nothing again
    out = tmp_path / "late"
    with monkeypatch.context() as patch:
        patch.setattr("search.loop.atomic_write_json", lambda *args: (_ for _ in ()).throw(Kill()))
        with pytest.raises(Kill):
            darts(out, "search.epochs=3")
    written = (out / "history.jsonl").read_text()
    assert not (out / "checkpoint.json").exists() and len(written.splitlines()) == 1
    with monkeypatch.context() as patch:
        patch.setattr(TrainEvaluator, "__call__", lambda *args: pytest.fail("evaluated again"))
        assert darts(out, "search.epochs=3") == 0
    assert (out / "history.jsonl").read_text() == written and untimed(lines(out)[0]) == whole[0]


def test_a_loop_checkpoint_the_supernet_does_not_match_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert darts(out) == 0
    state = json.loads((out / "checkpoint.json").read_text())
    derived = state["search"]["strategy"]["candidates"][0]
    state["search"]["strategy"]["candidates"] = [[(v + 1) % 5 for v in derived]]
    (out / "checkpoint.json").write_text(json.dumps(state))
    with pytest.raises(ArchError, match="is not the one this search state was written with") as info:
        darts(out)
    assert info.value.span.file == str(out / "checkpoint.json")


def test_train_derived_false_records_the_derived_architecture_unevaluated(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TrainEvaluator, "__call__", lambda *args: pytest.fail("the derived network was evaluated"))
    monkeypatch.setattr(TrainEvaluator, "final", lambda *args: pytest.fail("the derived network was trained"))
    out = tmp_path / "run"
    assert darts(out, "search.train_derived=false", "space.params.channels=4",
                 "search.derived_params={channels: 8}") == 0
    (record,) = lines(out)
    assert record["status"] == "derived" and record["metrics"]["supernet_val_acc"] > 0
    best = out / "best"
    assert (best / "arch.arch").is_file() and (best / "model.py").is_file()
    assert not (best / "weights.pt").exists() and not (best / "metrics.json").exists()
    # searched at 4 channels, derived (recorded and written) at search.derived_params' 8
    assert "self.stem_conv1 = nn.Conv2d(1, 4," in (out / "supernet.py").read_text()
    assert record["arch"] == (best / "arch.arch").read_text() and "stem_conv1 = x -> conv(8, 3," in record["arch"]
    assert "## DARTS" in (out / "report.md").read_text()


def test_a_supernet_that_diverges_or_runs_out_of_memory_stops_with_status_3_or_4(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "diverged"
    assert darts(out, "search.weights.lr=1e12", "search.weights.grad_clip=null", "search.epochs=1") == 3
    assert "the supernet's training diverged" in capsys.readouterr().out
    assert not (out / "history.jsonl").exists()

    def out_of_memory(self: BilevelSearch, index: int) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(BilevelSearch, "epoch", out_of_memory)
    out = tmp_path / "oom"
    assert darts(out) == 4
    assert "out of memory while training the supernet (estimated" in capsys.readouterr().out
    assert not (out / "history.jsonl").exists()
