"""Derivation by perturbation (search/darts/perturbation.py): the option whose removal hurts the supernet most is
kept, decided decisions become one-hot for the next trials, `zero` is never kept, the scores leave the supernet
as it was, the run records the selection and derives the same on every run of a seed, and bad settings are named."""
from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from compiler.errors import Span
from compiler.space import Decision, load_space
from compiler.supernet import RelaxedDecision, build_supernet
from conftest import run_cli
from search.darts.bilevel import BilevelSearch, Tuner
from search.darts.config import DartsConfigError, darts_config
from search.darts.perturbation import accuracy_score, decision_order, naswot_score, select
from search.data.digits import load_digits_splits
from test_darts import settings

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _decisions(count: int) -> list[RelaxedDecision]:
    """Layer decisions over (zero, skip, conv, pool)."""
    return [RelaxedDecision(i, Decision(f"e{i}.op", ("zero", "skip", "conv", "pool"), "layer",
                                        Span("s.arch", 1 + i, 5)),
                            1, (True, False, False, False), (True, True, False, True)) for i in range(count)]


def test_the_option_whose_removal_hurts_most_is_kept_and_zero_never() -> None:
    relaxed = _decisions(2)
    base = [torch.full((4,), 0.25), torch.full((4,), 0.25)]
    seen: list[list[torch.Tensor]] = []
    # decision 0 needs conv (option 2), decision 1 needs pool (3); zero's removal would "hurt" most but is excluded
    need = {0: torch.tensor([9.0, 1.0, 5.0, 2.0]), 1: torch.tensor([9.0, 1.0, 2.0, 4.0])}

    def score(weights: list[torch.Tensor]) -> float:
        seen.append([w.clone() for w in weights])
        return -float(sum((need[d] * (0.25 - w).clamp(min=0)).sum() for d, w in enumerate(weights)))

    choices, steps = select(relaxed, base, score, order=[1, 0])
    assert choices == (2, 3)
    assert [s.decision for s in steps] == [1, 0] and [s.chosen for s in steps] == [3, 2]
    assert sorted(steps[0].without) == [1, 2, 3]            # zero is never tried (exclude_zero)
    assert steps[0].without[3] == pytest.approx(-1.0)      # pool removed from decision 1: 4 * 0.25
    # trials of decision 0 see decision 1 fixed one-hot to pool; the base weights were not changed
    assert all(torch.equal(trial[1], torch.tensor([0.0, 0.0, 0.0, 1.0])) for trial in seen[3:])
    assert torch.equal(base[0], torch.full((4,), 0.25))
    choices, steps = select(relaxed, base, score, order=[0, 1], exclude_zero=False)
    assert choices == (0, 0)                                # without the rule, zero "matters" most


def test_once_scores_every_decision_in_the_supernet_as_trained() -> None:
    relaxed = _decisions(2)
    base = [torch.tensor([0.1, 0.2, 0.3, 0.4]), torch.tensor([0.4, 0.3, 0.2, 0.1])]
    seen: list[list[torch.Tensor]] = []

    def score(weights: list[torch.Tensor]) -> float:
        seen.append([w.clone() for w in weights])
        return float(sum(w.sum() for w in weights))   # removing the largest weight "hurts" most

    choices, _ = select(relaxed, base, score, order=[0, 1], progressive=False)
    assert choices == (3, 1)
    untouched = [trial[1 - d] for trial, d in zip(seen, [0, 0, 0, 1, 1, 1])]
    assert all(torch.equal(w, base[1 - d]) for w, d in zip(untouched, [0, 0, 0, 1, 1, 1]))
    assert choices == select(relaxed, base, score, order=[1, 0], progressive=False)[0]   # the order does not matter


def test_retune_gives_the_score_of_the_next_decisions_in_progressive_order() -> None:
    relaxed = _decisions(3)
    base = [torch.full((4,), 0.25) for _ in range(3)]
    tuned_with: list[list[torch.Tensor]] = []
    used: list[int] = []

    def scorer(generation: int):       # the score of the supernet tuned `generation` times: prefers option 1 + gen
        def score(weights: list[torch.Tensor]) -> float:
            used.append(generation)
            return float(sum(w[1 + generation] for w in weights))
        return score

    def retune(weights: list[torch.Tensor]):
        tuned_with.append([w.clone() for w in weights])
        return scorer(len(tuned_with))

    choices, steps = select(relaxed, base, scorer(0), order=[2, 0, 1], retune=retune)
    assert len(tuned_with) == 2                                   # after each decision but the last
    assert torch.equal(tuned_with[0][2], torch.tensor([0.0, 1.0, 0.0, 0.0]))  # decided: one-hot; the rest as trained
    assert torch.equal(tuned_with[0][0], base[0]) and torch.equal(tuned_with[1][0], torch.tensor([0.0, 0.0, 1.0, 0.0]))
    assert used == [0] * 3 + [1] * 3 + [2] * 3                    # each decision scored by the latest tuning
    assert choices == (2, 3, 1) and [s.chosen for s in steps] == [1, 2, 3]
    with pytest.raises(ValueError, match="progressive"):
        select(relaxed, base, scorer(0), order=[0, 1, 2], progressive=False, retune=retune)


def test_nan_scores_count_as_harmless_and_ties_take_the_first_option() -> None:
    relaxed = _decisions(1)
    scores = iter([float("nan"), 1.0, 1.0])
    choices, _ = select(relaxed, [torch.full((4,), 0.25)], lambda w: next(scores), order=[0])
    assert choices == (2,)


def test_orders_are_seeded_permutations_or_the_spaces() -> None:
    assert decision_order(5, "fixed", 3) == [0, 1, 2, 3, 4]
    random_order = decision_order(6, "random", 7)
    assert sorted(random_order) == list(range(6)) and random_order == decision_order(6, "random", 7)
    assert any(decision_order(6, "random", s) != random_order for s in range(8, 12))


TINY = """
model tiny(num_classes = 10) {
    input x: [1, 8, 8]
    x = x -> conv(8, 3) -> bn -> relu
    x = x -> [conv(8, 3) | maxpool(3, stride=1, padding=1) | identity] as op
    output x -> relu -> flatten -> linear(num_classes)
}
"""


def test_scores_read_the_supernet_without_changing_it() -> None:
    data = load_digits_splits()
    # the validation split in class order, as CIFAR-10's image folders give it
    data = replace(data, val=data.val.subset(torch.argsort(data.val.labels, stable=True)))
    supernet = build_supernet(load_space(TINY, "tiny.arch"))
    search = BilevelSearch(supernet, data, settings(epochs=1), seed=0, identity={"test": 1})
    search.run()
    state = {k: v.clone() for k, v in search.model.state_dict().items()}
    base = search.relaxation.expected(search.op_logits)
    inputs = search.val_inputs(16)
    assert inputs is not None and tuple(inputs.shape) == (16, 1, 8, 8)
    # drawn at random: the split's first 16 images are of two digits, the minibatch's of many
    images, labels = torch.cat([x for x, _ in search.val_loader]), search.val_loader.labels
    drawn = [int(torch.nonzero((images == row).flatten(1).all(1))[0]) for row in inputs]
    assert len(set(labels[:16].tolist())) == 2 and len(set(labels[drawn].tolist())) >= 5
    assert torch.equal(inputs, search.val_inputs(16)) and len(search.val_inputs(10_000)) == len(labels)
    naswot = naswot_score(search.model, inputs)
    accuracy = accuracy_score(search.model, list(search.val_loader))
    without_conv = [base[0].detach().clone()]
    without_conv[0][0] = 0.0
    assert naswot(base) != naswot(without_conv)            # the last ReLU sees the mixture without the conv
    # deterministic: a scorer built anew, and the same one asked again, give the same numbers
    assert naswot(base) == naswot_score(search.model, inputs)(base) == naswot(base)
    assert accuracy(base) == accuracy_score(search.model, list(search.val_loader))(base) == accuracy(base)
    scratch = copy.deepcopy(search.model).train()          # by hand: each batch's own batch-norm statistics
    with torch.no_grad():
        correct = sum(int((scratch(x, weights=base).argmax(1) == y).sum()) for x, y in search.val_loader)
    assert accuracy(base) == correct / len(labels) and accuracy(without_conv) != accuracy(base)
    assert all(torch.equal(state[k], v) for k, v in search.model.state_dict().items())  # running stats untouched


def test_tuner_fine_tunes_a_copy_the_same_way_after_a_resume(tmp_path: Path) -> None:
    data = load_digits_splits()
    supernet = build_supernet(load_space(TINY, "tiny.arch"))
    checkpoint = tmp_path / "darts_state.pt"
    search = BilevelSearch(supernet, data, settings(epochs=1), seed=0, checkpoint=checkpoint, identity={"test": 1})
    search.run()
    trained = {k: v.clone() for k, v in search.model.state_dict().items()}
    conv_only = [torch.tensor([1.0, 0.0, 0.0])]
    tuned = Tuner(search).tune(conv_only, 3)
    assert tuned is not search.model and Tuner(search).optimizer.param_groups[0]["lr"] == pytest.approx(0.0025)
    assert all(torch.equal(trained[k], v) for k, v in search.model.state_dict().items())  # the search's: as trained
    after = tuned.state_dict()
    moved = {k for k in trained if not torch.equal(trained[k], after[k])}
    assert {"conv1.weight", "conv2.weight", "linear1.weight", "bn1.running_mean"} <= moved
    assert "alphas.0" in trained and "alphas.0" not in moved   # the logits stay
    # a run resumed from the checkpoint tunes on the same batches: the same weights
    resumed = BilevelSearch(supernet, data, settings(epochs=1), seed=0, checkpoint=checkpoint, identity={"test": 1})
    resumed.run()
    again = Tuner(resumed).tune(conv_only, 3).state_dict()
    assert all(torch.equal(after[k], again[k]) for k in after)
    with pytest.raises(FloatingPointError, match="finetune_lr"):
        Tuner(resumed, lr=1e30).tune([torch.tensor([1.0, 0.0, 0.0])], 5)


def test_bad_settings_are_named() -> None:
    with pytest.raises(DartsConfigError, match=r"^search.derive.method: error: method must be one of argmax, "):
        darts_config({"derive": {"method": "best"}})
    with pytest.raises(DartsConfigError, match=r"^search.derive.score: error: score must be one of val_acc, naswot"):
        darts_config({"derive": {"score": "synflow"}})
    with pytest.raises(DartsConfigError, match=r"^search.derive.discretize: error: discretize must be progressive"):
        darts_config({"derive": {"discretize": "all"}})
    with pytest.raises(DartsConfigError, match=r"^search.derive.batch_size: error"):
        darts_config({"derive": {"batch_size": 1}})
    with pytest.raises(DartsConfigError, match=r"^search.derive.finetune_steps: error: finetune_steps fine-tunes .*"
                                               r"derive.discretize=progressive"):
        darts_config({"derive": {"finetune_steps": 10}})            # the default discretize=once has no "between"
    with pytest.raises(DartsConfigError, match=r"^search.derive.finetune_steps: error: finetune_steps must be in 0 "):
        darts_config({"derive": {"finetune_steps": 10**9, "discretize": "progressive"}})
    with pytest.raises(DartsConfigError, match=r"^search.derive.finetune_lr: error"):
        darts_config({"derive": {"finetune_lr": 0.0}})


def test_cli_derivation_by_perturbation_is_recorded_and_repeatable(tmp_path: Path) -> None:
    score = "naswot"    # val_acc goes through the same path (its score: test_scores_read_the_supernet_...)
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        proc = run_cli("+search=darts", "search.epochs=1", "search.train_derived=false", f"out_dir={out}")
        assert proc.returncode == 0, proc.stderr[-2000:]   # the default derivation: naswot, once
        assert f"derived by perturbation ({score}, each in the trained supernet" in proc.stdout
        record = json.loads((out / "history.jsonl").read_text().splitlines()[0])
        selection = json.loads((out / "alphas.json").read_text())["selection"]
        runs.append((record["decisions"], selection["steps"]))
        assert selection["method"] == "perturbation" and selection["score"] == score
        assert selection["discretize"] == "once"
        assert {s["decision"]: s["chosen"] for s in selection["steps"]} == record["decisions"]
        assert all("none" not in s["without"] and len(s["without"]) == 4 for s in selection["steps"])
        assert "derived by perturbation" in (out / "report.md").read_text()
    assert runs[0] == runs[1]   # the same seed: the same scores, the same derivation


def test_cli_fine_tuning_between_decisions_is_recorded(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_cli("+search=darts", "search.epochs=1", "search.train_derived=false", "search.derive.score=val_acc",
                   "search.derive.discretize=progressive", "search.derive.finetune_steps=4", f"out_dir={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert ("derivation by perturbation (val_acc, progressive, random order, 4 fine-tuning steps after each"
            in proc.stdout)
    assert "4 fine-tuning steps between decisions: DARTS-PT)" in proc.stdout
    selection = json.loads((out / "alphas.json").read_text())["selection"]
    assert selection["finetune_steps"] == 4 and selection["discretize"] == "progressive"
