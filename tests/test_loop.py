"""The search loop: budget of distinct evaluations, failures recorded, exact resume after a kill."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from compiler.space import load_space, load_space_file
from search.evaluators.base import EvaluatorBase
from search.evaluators.table import TableEvaluator
from search.journal import RECORD_FIELDS, Journal
from search.loop import ResumeError, SearchLoop
from search.objectives import ObjectiveSet
from search.strategies.evolution import RegularizedEvolution
from search.strategies.random_search import RandomSearch

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT.parent / "shared" / "data" / "nb201-cifar10.csv"
OBJECTIVES = ObjectiveSet.coerce("accuracy")


def _loop(out: Path, budget: int = 30, seed: int = 3, hook=None) -> SearchLoop:  # noqa: ANN001
    space = load_space_file(str(ROOT / "examples" / "spaces" / "nb201.arch"))
    strategy = RegularizedEvolution(space, seed=seed, objectives=OBJECTIVES)
    return SearchLoop(space, strategy, TableEvaluator(TABLE), OBJECTIVES, budget, out, seed=seed, progress=False,
                      on_result=hook)


def _essence(records: list[dict]) -> list[tuple]:
    return [(tuple(r["genotype"]), r["metrics"]["accuracy"], r["status"], r["arch"]) for r in records]


class Kill(BaseException):
    """Stands in for SIGKILL inside the process (the CLI test does the real one)."""


def _killed_at(n: int):  # noqa: ANN202
    def hook(record: dict) -> None:
        if record["index"] + 1 == n:
            raise Kill
    return hook


def test_budget_counts_distinct_architectures_and_journal_matches(tmp_path: Path) -> None:
    records = _loop(tmp_path).run()
    assert len(records) == 30 and len({tuple(r["genotype"]) for r in records}) == 30
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["genotype"] for line in lines] == [r["genotype"] for r in records]
    first = records[0]
    assert {"genotype", "arch", "metrics", "status", "seconds", "decisions"} <= set(first)
    assert first["arch"].startswith("# canonical form") and first["metrics"]["params"] > 0


def test_resume_after_kill_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    reference = _loop(tmp_path / "ref").run()
    with pytest.raises(Kill):
        _loop(tmp_path / "run", hook=_killed_at(12)).run()
    assert len((tmp_path / "run" / "history.jsonl").read_text().splitlines()) == 12
    resumed = _loop(tmp_path / "run").run()
    assert _essence(resumed) == _essence(reference)


def test_resume_replays_journal_lines_newer_than_the_checkpoint(tmp_path: Path) -> None:
    reference = _loop(tmp_path / "ref").run()
    out = tmp_path / "run"
    saved = {}

    def hook(record: dict) -> None:
        if record["index"] + 1 == 8:
            saved["checkpoint"] = (out / "checkpoint.json").read_text()
        if record["index"] + 1 == 15:
            raise Kill
    with pytest.raises(Kill):
        _loop(out, hook=hook).run()
    # A kill between the journal write and the checkpoint write leaves the checkpoint behind the journal;
    # a kill in the middle of a journal write leaves half a line.
    (out / "checkpoint.json").write_text(saved["checkpoint"])
    with (out / "history.jsonl").open("a") as handle:
        handle.write('{"genotype": [1, 2')
    resumed = _loop(out).run()
    assert _essence(resumed) == _essence(reference)


def test_resume_with_another_configuration_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Kill):
        _loop(tmp_path, seed=3, hook=_killed_at(5)).run()
    with pytest.raises(ResumeError):
        _loop(tmp_path, seed=4).run()


def test_failing_candidates_are_recorded_and_the_search_goes_on(tmp_path: Path) -> None:
    # Option 16 breaks the add of the residual: those candidates are invalid, the others succeed.
    space = load_space("model t() { input x: [3, 8, 8]\n a = x -> conv([3 | 16 | 3 ], 1) -> bn\n"
                       " b = (a, x) -> add\n output b -> relu -> global_avgpool -> flatten -> linear([2 | 4]) }",
                       "t.arch")

    class Evaluator(EvaluatorBase):
        def __call__(self, genotype, space):  # noqa: ANN001, ANN204
            if genotype[1] == 1:
                raise RuntimeError("CUDA out of memory (simulated)")
            return {"accuracy": float(genotype[0]), "status": "ok"}

    loop = SearchLoop(space, RandomSearch(space, seed=0, objectives=OBJECTIVES), Evaluator(), OBJECTIVES, 6,
                      tmp_path, progress=False)
    records = loop.run()
    statuses = {tuple(r["genotype"]): r["status"] for r in records}
    assert len(records) == 6
    assert all(s == "invalid" for g, s in statuses.items() if g[0] == 1)
    assert all(s == "oom" for g, s in statuses.items() if g[0] != 1 and g[1] == 1)
    assert all(s == "ok" for g, s in statuses.items() if g[0] != 1 and g[1] == 0)
    invalid = next(r for r in records if r["status"] == "invalid")
    assert "t.arch:3:" in invalid["metrics"]["error"] and "shape error" in invalid["metrics"]["error"]


@pytest.mark.parametrize("mistake", ["config", "data"])
def test_a_config_or_data_mistake_stops_the_search_instead_of_failing_every_candidate(tmp_path: Path,
                                                                                       mistake: str) -> None:
    from compiler.config_values import ConfigError
    from search.data.base import DataError
    space = load_space_file(str(ROOT / "examples" / "spaces" / "nb201.arch"))

    class Evaluator(EvaluatorBase):
        def __call__(self, genotype, space):  # noqa: ANN001, ANN204
            if mistake == "config":
                raise ConfigError("trainer.augment.translate", "must be smaller than the images' side (8), not 8")
            raise DataError("no such folder or archive: '/nowhere'", "/nowhere")

    loop = SearchLoop(space, RandomSearch(space, seed=0, objectives=OBJECTIVES), Evaluator(), OBJECTIVES, 6,
                      tmp_path, progress=False)
    with pytest.raises(ConfigError if mistake == "config" else DataError):
        loop.run()
    assert not (tmp_path / "history.jsonl").exists() or (tmp_path / "history.jsonl").read_text() == ""


def test_augmentation_shifts_must_fit_the_images() -> None:
    from compiler.config_values import ConfigError
    from search.data.augment import AugmentConfig, check_fits
    check_fits(AugmentConfig(translate=7), (100, 3, 8, 8), "dataset.augment")
    with pytest.raises(ConfigError, match=r"^trainer.augment.translate: error: must be smaller than the images' "
                                          r"side \(8\), not 8"):
        check_fits(AugmentConfig(translate=8, pad_mode="reflect"), (100, 3, 8, 16), "trainer.augment")


def test_with_one_worker_each_result_is_checkpointed_before_the_next_candidate_runs(tmp_path: Path) -> None:
    space = load_space_file(str(ROOT / "examples" / "spaces" / "nb201.arch"))
    table = TableEvaluator(TABLE)
    calls: list[tuple] = []
    seen: list[tuple[int, int, int]] = []   # (record index, evaluations run by then, checkpointed evaluations)

    class Counting(EvaluatorBase):
        def __call__(self, genotype, space):  # noqa: ANN001, ANN204
            calls.append(tuple(genotype))
            return table(genotype, space)

    def hook(record: dict) -> None:
        checkpoint = json.loads((tmp_path / "checkpoint.json").read_text())
        seen.append((record["index"], len(calls), checkpoint["evaluations"]))
        assert checkpoint["in_flight"] == [] or len(checkpoint["in_flight"]) == 1

    SearchLoop(space, RandomSearch(space, seed=0, objectives=OBJECTIVES), Counting(), OBJECTIVES, 5, tmp_path,
               progress=False, on_result=hook).run()
    assert seen == [(i, i + 1, i + 1) for i in range(5)]   # the next candidate had not run yet


def test_journal_add_builds_the_record_and_appends_it(tmp_path: Path) -> None:
    """The one builder and writer of history.jsonl's lines (the loop's, and every strategy's through it)."""
    journal = Journal.of_run(tmp_path)
    first = journal.add(0, (1, 2), {"op": "conv"}, "model m() {}", {"accuracy": 0.5}, 1.25)
    second = journal.add(1, [0, 0], {"op": "skip"}, "", {"status": "invalid", "error": "shape error"}, 0.1)
    assert journal.path == tmp_path / "history.jsonl" and journal.read() == [first, second]
    assert set(first) == {*RECORD_FIELDS, "seconds", "time"} and first["genotype"] == [1, 2]
    assert (first["status"], second["status"]) == ("ok", "invalid")
