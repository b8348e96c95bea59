"""trainer.distributed=ddp: two gloo processes on the CPU train as one process does on the same global batch, every
rank ends on the same weights, rank 0 alone writes; through torchrun, through the trainer's own processes, and for a
search's final training."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from compiler.api import compile_source
from compiler.config_values import ConfigError
from conftest import ROOT, run_cli
from search.data.augment import AugmentConfig
from search.data.digits import load_digits_splits
from search.data.loader import DeviceLoader
from search.training import seed_everything, train, trainer_config
from search.training.distributed import check_batch
from search.training.processes import ModelSource, run_ranks

SMALL = """
model small(num_classes = 10) {
    input x: [1, 8, 8]
    x = x -> conv(8, 3) -> relu -> maxpool(2)
    output x -> flatten -> linear(num_classes)
}
"""
TWO_STEPS = {"budget": {"steps": 2}, "batch_size": 64, "cpu_threads": 1, "progress": False, "evaluate_test": False}


def test_two_gloo_processes_train_like_one_process_on_the_global_batch() -> None:
    data = load_digits_splits()
    compiled = compile_source(SMALL)
    seed_everything(0)
    single = train(compiled.build(), data, trainer_config(TWO_STEPS))
    ranks = run_ranks(ModelSource.of(compiled), data, trainer_config({**TWO_STEPS, "distributed": "ddp"}),
                      processes=2, seed=0, all_states=True)
    assert [r.status for r in ranks] == ["ok", "ok"] and ranks[0].metrics["processes"] == 2
    zero, one = (r.state for r in ranks)
    assert zero is not None and one is not None
    assert all(torch.equal(zero[k], one[k]) for k in zero) and ranks[0].fingerprint == ranks[1].fingerprint
    expected = single.model.state_dict()
    seed_everything(0)
    initial = compiled.build().state_dict()
    assert any(not torch.equal(initial[k], expected[k]) for k in expected)  # the two steps moved the weights
    for key, value in zero.items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=1e-6)
    assert ranks[0].metrics["train_loss"] == pytest.approx(single.metrics["train_loss"], abs=1e-6)
    assert ranks[0].history[0]["val_acc"] == single.history[0]["val_acc"]


def test_each_rank_takes_its_slice_of_the_same_augmented_global_batch() -> None:
    data = load_digits_splits()
    options = dict(batch_size=8, device="cpu", mean=data.mean, std=data.std, shuffle=True, drop_last=True, seed=3,
                   augment=AugmentConfig(translate=2, cutout=2))
    whole = next(iter(DeviceLoader(data.train, **options)))  # type: ignore[arg-type]
    parts = [next(iter(DeviceLoader(data.train, shard=(rank, 2), **options))) for rank in (0, 1)]  # type: ignore
    assert torch.equal(torch.cat([x for x, _ in parts]), whole[0])
    assert torch.equal(torch.cat([y for _, y in parts]), whole[1])


def test_ddp_options_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"trainer.distributed: error: unknown distributed 'horovod'"):
        trainer_config({"distributed": "horovod"})
    with pytest.raises(ConfigError, match=r"trainer.processes: error: must be >= 1"):
        trainer_config({"processes": 0})
    with pytest.raises(ConfigError, match=r"trainer.batch_size: error: 64 is not divisible by the 3 processes"):
        check_batch(trainer_config({"batch_size": 64}), 3)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        assert key not in os.environ
    with pytest.raises(ConfigError, match=r"trainer.distributed: error: ddp trains in several processes, and this "
                                          r"one was not started as one of them"):
        train(compile_source(SMALL).build(), load_digits_splits(), {**TWO_STEPS, "distributed": "ddp"})


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_torchrun_trains_on_two_processes_and_rank_zero_alone_writes(tmp_path: Path) -> None:
    arch = tmp_path / "small.arch"
    arch.write_text(SMALL)
    args = ["task=train", f"arch={arch}", "dataset=digits", "trainer.budget.epochs=2", "trainer.cpu_threads=1",
            "trainer.batch_size=64", "trainer.progress=false"]
    single = run_cli(*args, f"out_dir={tmp_path / 'one'}")
    assert single.returncode == 0, single.stderr[-3000:]
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONPATH": str(ROOT)}
    out = tmp_path / "ddp"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           "-m", "compiler", *args, "trainer.distributed=ddp", f"out_dir={out}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((out / "metrics.json").read_text())["processes"] == 2
    assert (out / ".hydra" / "config.yaml").exists()
    ddp_weights, one_weights = (torch.load(path / "weights.pt", weights_only=True) for path in (out, tmp_path / "one"))
    assert ddp_weights.keys() == one_weights.keys()  # the same trained network as one process on the global batch
    assert all(torch.allclose(ddp_weights[k].double(), one_weights[k].double(), atol=1e-4) for k in one_weights)
    log = _log(out)
    assert [r["epoch"] for r in log] == [1, 2]  # written once, by rank 0
    for ddp, one in zip(log, _log(tmp_path / "one")):
        assert ddp["train_loss"] == pytest.approx(one["train_loss"], abs=1e-5) and ddp["val_acc"] == one["val_acc"]
    job_log = (out / "__main__.log").read_text()
    assert job_log.count("epoch 2/2") == 1, job_log  # the other rank logs nothing into the run directory
    assert proc.stdout.count("wrote ") == 1


@pytest.mark.slow
def test_a_search_trains_its_best_architecture_on_two_processes(tmp_path: Path) -> None:
    out = tmp_path / "search"
    proc = run_cli("+search=random", "search.budget=2", "evaluator.search_overrides.budget.epochs=1",
                   "evaluator.final_overrides.budget.epochs=1", "evaluator.final_overrides.distributed=ddp",
                   "evaluator.final_overrides.processes=2", "search.progress=false", f"out_dir={out}", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = json.loads((out / "best" / "metrics.json").read_text())
    assert final["processes"] == 2 and final["status"] == "ok" and 0 < final["test_acc"] <= 1
    state = torch.load(out / "best" / "weights.pt", weights_only=True)
    assert any(k.endswith("running_mean") for k in state)  # BatchNorm statistics, equal on both ranks (checked)


@pytest.mark.slow   # two spawned processes (~25 s); the default run is near its 15 minutes
def test_a_user_mistake_inside_the_ranks_is_one_located_error_not_their_tracebacks() -> None:
    from compiler.errors import ArchError
    cfg = trainer_config({**TWO_STEPS, "distributed": "ddp", "augment": {"translate": 8}})   # 8x8 digits
    with pytest.raises(ArchError) as info:
        run_ranks(ModelSource.of(compile_source(SMALL)), load_digits_splits(), cfg, processes=2, seed=0)
    assert str(info.value).startswith("trainer.augment.translate: error: must be smaller than the images' side (8)")
    assert "Traceback" not in str(info.value)
