"""`python -m compiler task=train`: models re-specialised to their data, outputs that reload, failures that exit."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from compiler.errors import ArchError
from search.data.digits import load_digits_splits
from search.tasks.train import train_task
from search.training.specialise import compile_for_data

ROOT = Path(__file__).resolve().parents[1]
FIXED = """# a model with a fixed class count
model fixed(size = 8) {
    input x: [1, size, size]
    output x -> conv(8, 3) -> relu -> global_avgpool -> flatten -> linear(1000)
}
"""
TOO_DEEP = """model deep(num_classes = 10) {
    input x: [3, 32, 32]
    output x -> conv(8, 3) -> maxpool(2) -> maxpool(2) -> maxpool(2) -> maxpool(2)
             -> flatten -> linear(num_classes)
}
"""
SMALL = """model small(num_classes = 10, in_channels = 1, size = 8) {
    input x: [in_channels, size, size]
    output x -> conv(16, 3) -> bn -> relu -> global_avgpool -> flatten -> linear(num_classes)
}
"""


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "compiler", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def compose_train(*overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=["task=train", "trainer.progress=false", *overrides])


def load_generated(path: Path):
    spec = importlib.util.spec_from_file_location("generated_model_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_resnet20_learns_digits_and_its_weights_reload_into_model_py(tmp_path: Path) -> None:
    out = tmp_path / "r20"
    done = run_cli("task=train", "arch=examples/resnet20.arch", "dataset=digits", f"out_dir={out}",
                   "trainer.budget.epochs=12", "trainer.cpu_threads=1")
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["test_acc"] >= 0.95
    assert metrics["input_shape"] == [1, 8, 8] and metrics["num_classes"] == 10 and metrics["params"] > 250_000
    assert len((out / "train_log.jsonl").read_text().splitlines()) == 12

    module = load_generated(out / "model.py")                   # standalone: no import of this project
    model = module.build_model()
    model.load_state_dict(torch.load(out / "weights.pt", weights_only=True))
    model.eval()
    test = load_digits_splits().test
    mean = torch.tensor(metrics["normalization"]["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(metrics["normalization"]["std"]).view(1, -1, 1, 1)
    with torch.no_grad():
        predictions = model((test.images.float() / 255 - mean) / std).argmax(1)
    accuracy = (predictions == test.labels).float().mean().item()
    assert abs(accuracy - metrics["test_acc"]) <= 1 / len(test.labels) + 1e-9


def test_model_without_num_classes_is_a_located_error(tmp_path: Path) -> None:
    arch = tmp_path / "fixed.arch"
    arch.write_text(FIXED)
    done = run_cli("task=train", f"arch={arch}", "dataset=digits", f"out_dir={tmp_path / 'out'}")
    assert done.returncode == 2
    assert f"{arch}:4:" in done.stderr and "outputs [1000]" in done.stderr and "num_classes" in done.stderr
    assert "Traceback" not in done.stderr


def test_shape_error_at_the_data_sets_size_names_the_line_and_the_data(tmp_path: Path) -> None:
    arch = tmp_path / "deep.arch"
    arch.write_text(TOO_DEEP)
    with pytest.raises(ArchError) as err:
        train_task(compose_train(f"arch={arch}", f"out_dir={tmp_path / 'out'}"))
    text = str(err.value)
    assert f"{arch}:3:" in text and "dataset 'digits' ([1, 8, 8], 10 classes)" in text


def test_data_decides_input_and_class_count_and_params_win() -> None:
    data = load_digits_splits()
    result = compile_for_data(ROOT / "examples" / "resnet20.arch", data)
    assert result.summary["input_shape"] == [1, 8, 8] and result.summary["output_shape"] == [10]
    assert result.graph.params["in_channels"] == 1 and result.graph.params["size"] == 8
    wider = compile_for_data(ROOT / "examples" / "resnet20.arch", data, {"width": 8})
    assert wider.summary["params"] < result.summary["params"]


def test_divergence_exits_non_zero_with_one_line_and_metrics(tmp_path: Path, capsys) -> None:
    arch = tmp_path / "small.arch"
    arch.write_text(SMALL)
    out = tmp_path / "out"
    status = train_task(compose_train(f"arch={arch}", f"out_dir={out}", "trainer.optimizer.lr=1e30",
                                      "trainer.optimizer.momentum=0", "trainer.log_every=1",
                                      "trainer.budget.steps=5"))
    assert status == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("training failed: diverged: the training loss became")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "diverged" and not (out / "weights.pt").exists() and (out / "model.py").exists()


def test_input_shape_and_bad_trainer_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ArchError, match="input_shape"):
        train_task(compose_train("arch=examples/resnet20.arch", "input_shape=[3,8,8]", f"out_dir={tmp_path}"))
    with pytest.raises(ArchError, match="trainer.precision"):
        train_task(compose_train("arch=examples/resnet20.arch", "trainer.precision=fp8", f"out_dir={tmp_path}"))
