"""The export backend: ONNX, torch.export and TorchScript files that reload and compute what model.py computes,
from `python -m compiler export=[...]` and from `task=train` (trained weights)."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import onnxruntime
import pytest
import torch

from compiler.api import compile_file, compile_source
from compiler.backends import export
from compiler.backends.export import ExportError, export_model
from conftest import EXAMPLES, run_cli
from search.data.digits import load_digits_splits

TWO_INPUTS = """
model pair() {
    input a: [4, 6, 6]
    input b: [4, 6, 6]
    output (a -> conv(4, 3), b) -> add -> global_avgpool -> flatten -> linear(3)
}
"""
SMALL = """model small(num_classes = 10, in_channels = 1, size = 8) {
    input x: [in_channels, size, size]
    output x -> conv(16, 3) -> bn -> relu -> flatten -> linear(num_classes)
}
"""


def test_every_format_reloads_and_matches_the_model_at_another_batch_size(tmp_path: Path) -> None:
    compiled = compile_file(EXAMPLES / "resnet20.arch")
    model = compiled.build().eval()
    report = export_model(model, [compiled.graph.inputs[0].shape], tmp_path, ["onnx", "pt2", "torchscript", "pt2"])
    assert list(report["formats"]) == ["onnx", "pt2", "torchscript"]  # repeats dropped, order kept
    assert json.loads((tmp_path / "exports.json").read_text()) == report
    for entry in report["formats"].values():
        assert (tmp_path / entry["file"]).stat().st_size > 100_000  # the weights are in the file
        assert entry["max_abs_diff"] < 1e-4 and entry["check_batch"] == export.CHECK_BATCH
    assert report["formats"]["onnx"]["checked_with"].startswith("onnxruntime")
    # the batch dimension is dynamic in every format: batch 5 was seen by none of the exports
    x = torch.randn(5, *compiled.graph.inputs[0].shape)
    with torch.no_grad():
        expected = model(x)
        session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
        onnx_out = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
        pt2_out = torch.export.load(str(tmp_path / "model.pt2")).module()(x)
        with warnings.catch_warnings():   # torch.jit.load is deprecated in favour of torch.export; still shipped
            warnings.simplefilter("ignore", FutureWarning)
            script_out = torch.jit.load(str(tmp_path / report["formats"]["torchscript"]["file"]))(x)
    assert torch.allclose(onnx_out, expected, atol=1e-4) and torch.allclose(pt2_out, expected, atol=1e-5)
    assert torch.allclose(script_out, expected, atol=1e-5)


def test_models_with_several_inputs_export(tmp_path: Path) -> None:
    compiled = compile_source(TWO_INPUTS)
    report = export_model(compiled.build(), [n.shape for n in compiled.graph.inputs], tmp_path, ["onnx", "pt2"])
    assert all(e["max_abs_diff"] < 1e-5 for e in report["formats"].values())
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input0", "input1"]


def test_a_wrong_or_failing_export_is_an_error_naming_the_format(tmp_path: Path, monkeypatch) -> None:
    compiled = compile_source(TWO_INPUTS)
    shapes = [n.shape for n in compiled.graph.inputs]
    wrong = export.Exporter("pt2", "model.pt2", export._save_pt2,
                            lambda path: ((lambda *xs: torch.zeros(export.CHECK_BATCH, 3)), "a broken loader"))
    monkeypatch.setitem(export.EXPORTERS, "pt2", wrong)
    with pytest.raises(ExportError, match=r"the pt2 export does not compute what the model does: .*max difference"):
        export_model(compiled.build(), shapes, tmp_path, ["pt2"])

    def refuse(model, example, path):
        raise NotImplementedError("op 'fancy' has no ONNX symbolic\nmore detail")
    monkeypatch.setitem(export.EXPORTERS, "onnx", export.Exporter("onnx", "model.onnx", refuse, export._load_onnx))
    with pytest.raises(ExportError, match=r"^export to onnx failed: op 'fancy' has no ONNX symbolic$") as info:
        export_model(compiled.build(), shapes, tmp_path, ["onnx"])
    assert isinstance(info.value.__cause__, NotImplementedError)
    with pytest.raises(ValueError, match=r"unknown export format\(s\) \['tflite'\]; known: onnx, pt2, torchscript"):
        export_model(compiled.build(), shapes, tmp_path, ["tflite"])


def test_cli_exports_next_to_model_py_and_refuses_mistakes(tmp_path: Path) -> None:
    done = run_cli(f"arch={EXAMPLES / 'resnet20.arch'}", f"out_dir={tmp_path}", "export=[pt2]")
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"exported {tmp_path / 'model.pt2'} (pt2; checked with torch.export.load: max |diff|" in done.stdout
    assert json.loads((tmp_path / "exports.json").read_text())["formats"]["pt2"]["max_abs_diff"] < 1e-4
    bad = run_cli(f"arch={EXAMPLES / 'resnet20.arch'}", f"out_dir={tmp_path / 'bad'}", "export=[tflite]")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "export: error: unknown export format(s) ['tflite']; known: onnx, pt2, torchscript" in bad.stderr
    # refused before any work: out_dir holds only what Hydra and the run lock put there first
    assert {p.name for p in (tmp_path / "bad").iterdir()} <= {".hydra", "__main__.log", ".run.lock"}
    space = run_cli(f"arch={EXAMPLES / 'spaces' / 'nb201.arch'}", f"out_dir={tmp_path / 'space'}", "export=[onnx]")
    assert space.returncode == 2 and "Traceback" not in space.stderr
    assert "export: error: " in space.stderr and "is a search space" in space.stderr


def test_trained_model_exports_with_its_weights(tmp_path: Path) -> None:
    arch = tmp_path / "small.arch"
    arch.write_text(SMALL)
    out = tmp_path / "out"
    done = run_cli("task=train", f"arch={arch}", "dataset=digits", f"out_dir={out}", "trainer.budget.epochs=4",
                   "trainer.cpu_threads=1", "trainer.progress=false", "export=[onnx]")
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    test = load_digits_splits().test
    mean = torch.tensor(metrics["normalization"]["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(metrics["normalization"]["std"]).view(1, -1, 1, 1)
    x = ((test.images.float() / 255 - mean) / std).numpy()
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    predictions = torch.from_numpy(session.run(None, {"input": x})[0]).argmax(1)
    accuracy = (predictions == test.labels).float().mean().item()
    assert metrics["test_acc"] > 0.5  # trained, not fresh weights
    assert abs(accuracy - metrics["test_acc"]) <= 1 / len(test.labels) + 1e-9


def test_a_format_whose_packages_are_missing_is_refused_before_any_work(monkeypatch) -> None:
    from omegaconf import OmegaConf

    from compiler.errors import ArchError
    from search.tasks.common import export_formats
    real = export.importlib.util.find_spec
    monkeypatch.setattr(export.importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript"
                        else real(name, *a))
    assert export.check_formats(["pt2", "torchscript"]) == ["pt2", "torchscript"]
    with pytest.raises(export.MissingExportPackages, match="onnx export needs the package.s. onnxscript, which"):
        export.check_formats(["pt2", "onnx"])
    with pytest.raises(ArchError) as info:
        export_formats(OmegaConf.create({"export": ["onnx"]}))
    assert str(info.value).startswith("export: error: onnx export needs the package(s) onnxscript")
    assert info.value.hint == "pip install -e '.[export]'"
