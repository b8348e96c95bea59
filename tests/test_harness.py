"""The generated profiling harness (DIR/profile.py): runs standalone for every example, takes its input shape from
the IR, writes valid JSON, and embeds exactly the measuring code the in-process profiler uses."""
from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from compiler.api import CompileResult, compile_file, compile_source
from compiler.backends.harness import generate_harness, measure_source
from compiler.backends.runtime import measure
from conftest import EXAMPLES

FAST = ["--device", "cpu", "--threads", "1", "--warmup", "1", "--min-time", "0", "--min-iters", "2",
        "--max-iters", "2"]

DIGITS = """
model digits(num_classes = 10) {
    input x: [1, 8, 8]
    f = x -> conv(16, 3) -> bn -> relu -> conv(32, 3, stride=2) -> bn -> relu
    output f -> global_avgpool -> flatten -> linear(num_classes)
}
"""


def write(result: CompileResult, out: Path) -> Path:
    result.write(out)
    return out / "profile.py"


def run_harness(script: Path, cwd: Path, *args: str) -> dict:
    """Run profile.py in a fresh interpreter from another folder and return its JSON report."""
    out = cwd / "report.json"
    proc = subprocess.run([sys.executable, str(script), *args, "--json", str(out)], cwd=cwd, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "median ms" in proc.stdout and f"wrote {out}" in proc.stdout
    return json.loads(out.read_text())


def check_report(report: dict, input_shape: list[int], batch_sizes: list[int]) -> None:
    assert report["input_shapes"] == [input_shape]
    assert report["device"]["type"] == "cpu" and report["versions"]["torch"] == torch.__version__
    assert [r["batch_size"] for r in report["results"]] == batch_sizes
    for r in report["results"]:
        assert r["iters"] == 2 and 0 < r["min_ms"] <= r["median_ms"] <= r["p90_ms"] <= r["max_ms"]
        assert r["throughput"] == pytest.approx(r["batch_size"] * 1e3 / r["median_ms"])
        assert r["peak_mem_mb"] >= 0 and r["peak_mem_kind"] == "cpu_rss_growth"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.arch")), ids=lambda p: p.stem)
def test_harness_runs_for_every_example(path: Path, tmp_path: Path) -> None:
    result = compile_file(path)
    report = run_harness(write(result, tmp_path / "build"), tmp_path, *FAST, "--batch-sizes", "1")
    check_report(report, result.summary["input_shape"], [1])
    assert report["settings"]["dtype"] == "fp32" and report["settings"]["train"] is False


def test_input_shape_comes_from_the_ir(tmp_path: Path) -> None:
    """An 8x8 one-channel digits model and resnet18 at 224 (and at 32) all profile without shape errors."""
    digits = run_harness(write(compile_source(DIGITS), tmp_path / "digits"), tmp_path, *FAST, "--batch-sizes", "1,3",
                         "--train")
    check_report(digits, [1, 8, 8], [1, 3])
    assert digits["settings"]["train"] is True and digits["model"] == "Digits"
    r18 = run_harness(write(compile_file(EXAMPLES / "resnet18.arch"), tmp_path / "r18"), tmp_path, *FAST,
                      "--batch-sizes", "1")
    check_report(r18, [3, 224, 224], [1])
    small = run_harness(write(compile_file(EXAMPLES / "resnet18.arch", size=32), tmp_path / "r18s"), tmp_path, *FAST,
                        "--batch-sizes", "2", "--channels-last", "--dtype", "bf16")
    check_report(small, [3, 32, 32], [2])
    assert small["settings"]["channels_last"] is True and small["settings"]["dtype"] == "bf16"


def test_harness_is_standalone_and_embeds_the_shared_measuring_code() -> None:
    source = generate_harness(compile_source(DIGITS).graph)
    assert measure_source() in source
    assert "def time_iterations(" in measure_source() and "def profile_module(" in measure_source()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert "torch" in imported
    assert imported - {"torch"} <= set(sys.stdlib_module_names) | {"__future__"}, imported
    assert source == generate_harness(compile_source(DIGITS).graph)  # deterministic


def load_harness(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("harness_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def test_harness_report_has_the_in_process_schema(tmp_path: Path) -> None:
    result = compile_source(DIGITS)
    harness = load_harness(write(result, tmp_path))
    out = tmp_path / "r.json"
    assert harness.main([*FAST, "--batch-sizes", "1", "--json", str(out)]) == 0
    script_report = json.loads(out.read_text())
    settings = measure.Settings(threads=1, warmup=1, min_time_s=0, min_iters=2, max_iters=2)
    api_report = json.loads(json.dumps(measure.profile_module(result.build(), [(1, 8, 8)], settings)))
    assert script_report.keys() == api_report.keys()
    assert script_report["results"][0].keys() == api_report["results"][0].keys()
    assert script_report["settings"] == api_report["settings"]


def test_write_puts_profile_py_next_to_model_py(tmp_path: Path) -> None:
    result = compile_source(DIGITS)
    result.write(tmp_path)
    assert (tmp_path / "profile.py").read_text() == result.harness
    assert {p.name for p in tmp_path.iterdir()} >= {"model.py", "profile.py", "arch.arch", "summary.json"}


@pytest.mark.parametrize("args, message", [
    (["--dtype", "fp8"], "invalid choice: 'fp8'"),
    (["--batch-sizes", "0,4"], "batch sizes must be positive"),
    (["--batch-sizes", "a"], "invalid literal"),
    (["--device", "tpu"], "device must be cpu or cuda"),
    (["--clock", "thread"], "needs device='cpu' and threads=1"),
    (["--threads", "1", "--cpu", "4096"], "cpu 4096 is not one this process may run on"),
])
def test_bad_command_lines_exit_2_with_a_message(args: list[str], message: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        measure.settings_from_argv(["--device", "cpu", *args] if "--device" not in args else args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA GPU; use --device cpu"):
        measure.profile_module(torch.nn.Identity(), [(4,)], measure.Settings(device="cuda"))
