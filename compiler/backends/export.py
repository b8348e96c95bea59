"""Deployment exports of a built model: ONNX, torch.export (.pt2) and TorchScript.

Every export is checked, not assumed: the written file is loaded back (ONNX through onnxruntime when it is
installed) and run on a random batch of another size than the one it was exported with (the batch dimension is
exported as dynamic), and its output is compared with the eager model's. The figures go into ``exports.json``.

    report = export_model(compiled.build().eval(), [compiled.graph.inputs[0].shape], "build/r20", ["onnx", "pt2"])
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

EXPORT_BATCH = 2      # batch size of the example inputs (torch.export specialises a dimension of size 1)
CHECK_BATCH = 3       # another batch size for the check, so that a batch fixed by mistake shows
RELATIVE_TOLERANCE = 1e-4
# torch's ONNX exporter and the libraries under it log about a dozen INFO lines per export (passes applied, nodes
# removed): kept below WARNING unless asked for (``debug=true``, or a logger set to DEBUG, e.g. hydra.verbose=onnx_ir)
LIBRARY_LOGGERS = ("onnxscript", "onnx_ir", "torch.onnx")


class ExportError(RuntimeError):
    """An export failed, or the exported model does not compute what the eager one does."""


class MissingExportPackages(ValueError):
    """A format asked for needs packages that are not installed; ``install`` says how to get them."""

    def __init__(self, message: str, install: str) -> None:
        super().__init__(message)
        self.install = install


Runner = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Exporter:
    """One format: how to write it, and how to load it back as something that runs on tensors."""

    name: str
    filename: str
    save: Callable[[torch.nn.Module, tuple[torch.Tensor, ...], Path], None]
    load: Callable[[Path], tuple[Runner, str]]  # -> (runner, what ran the check)
    note: str = ""
    requires: tuple[str, ...] = ()   # modules the format needs beyond torch (checked before any work)
    install: str = ""                # how to get them


@contextlib.contextmanager
def quiet_library_logs(enabled: bool = True) -> Iterator[None]:
    """Raise the exporter libraries' loggers to WARNING for the duration (those set to DEBUG on purpose excepted)."""
    loggers = [logging.getLogger(name) for name in LIBRARY_LOGGERS]
    saved = [logger.level for logger in loggers]
    try:
        if enabled:
            for logger in loggers:
                if not logger.isEnabledFor(logging.DEBUG):
                    logger.setLevel(logging.WARNING)
        yield
    finally:
        for logger, level in zip(loggers, saved):
            logger.setLevel(level)


def _batch_dims(example: tuple[torch.Tensor, ...]) -> tuple[dict[int, Any], ...]:
    batch = torch.export.Dim("batch")
    return tuple({0: batch} for _ in example)


def _save_pt2(model: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path) -> None:
    torch.export.save(torch.export.export(model, example, dynamic_shapes=_batch_dims(example)), str(path))


def _load_pt2(path: Path) -> tuple[Runner, str]:
    return torch.export.load(str(path)).module(), "torch.export.load"


ONNX_SINGLE_FILE_BYTES = 1 << 30  # protobuf caps a file at 2 GB: larger weights go to model.onnx.data


def _save_onnx(model: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path) -> None:
    try:
        import onnxscript  # noqa: F401  (torch's ONNX exporter is built on it)
    except ImportError as err:
        raise ImportError("ONNX export needs the onnx and onnxscript packages: pip install -e '.[export]'") from err
    names = [f"input{i}" if len(example) > 1 else "input" for i in range(len(example))]
    weight_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # the exporter prints its progress
        warnings.filterwarnings("ignore", message=".*shares the same shape constraints")  # one batch Dim, many inputs
        torch.onnx.export(model, example, str(path), dynamo=True, dynamic_shapes=_batch_dims(example),
                          input_names=names, output_names=["output"], verbose=False,
                          external_data=weight_bytes > ONNX_SINGLE_FILE_BYTES)


def _load_onnx(path: Path) -> tuple[Runner, str]:
    try:
        import onnxruntime
    except ImportError:
        import onnx  # at least a structural check of the written file
        onnx.checker.check_model(str(path))
        return None, "onnx.checker (install onnxruntime to compare outputs)"  # type: ignore[return-value]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(*xs: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {n: x.numpy() for n, x in zip(names, xs)})[0])
    return run, f"onnxruntime {onnxruntime.__version__}"


def _save_torchscript(model: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch deprecates TorchScript; see Exporter.note
        torch.jit.save(torch.jit.trace(model, example), str(path))


def _load_torchscript(path: Path) -> tuple[Runner, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path)), "torch.jit.load"


EXPORTERS: dict[str, Exporter] = {e.name: e for e in (
    Exporter("onnx", "model.onnx", _save_onnx, _load_onnx, requires=("onnx", "onnxscript"),
             install="pip install -e '.[export]'"),
    Exporter("pt2", "model.pt2", _save_pt2, _load_pt2),
    Exporter("torchscript", "model.torchscript.pt", _save_torchscript, _load_torchscript,
             note="traced; torch 2.14 deprecates TorchScript in favour of torch.export (pt2)"),
)}


def check_formats(formats: Sequence[str]) -> list[str]:
    """The formats asked for, in order and without repeats; a clear error for unknown ones and for those whose
    packages are not installed (so that a training run does not find out only at its end)."""
    unknown = [f for f in formats if f not in EXPORTERS]
    if unknown:
        raise ValueError(f"unknown export format(s) {unknown}; known: {', '.join(EXPORTERS)}")
    for name in dict.fromkeys(formats):
        missing = [m for m in EXPORTERS[name].requires if importlib.util.find_spec(m) is None]
        if missing:
            raise MissingExportPackages(f"{name} export needs the package(s) {', '.join(missing)}, which are not "
                                        "installed", EXPORTERS[name].install)
    return list(dict.fromkeys(formats))


def export_model(model: torch.nn.Module, input_shapes: Sequence[Sequence[int]], out_dir: str | Path,
                 formats: Sequence[str], seed: int = 0, library_logs: bool = False) -> dict[str, Any]:
    """Write ``model`` (its current weights, CPU, fp32, eval mode) in each format, check each, and write
    ``exports.json``. Raises ExportError naming the format when an export fails or disagrees with the model.
    ``library_logs``: let the exporters' libraries log at INFO (see ``LIBRARY_LOGGERS``)."""
    formats = check_formats(formats)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.to("cpu", torch.float32).eval()
    generator = torch.Generator().manual_seed(seed)
    example = tuple(torch.randn(EXPORT_BATCH, *s, generator=generator) for s in input_shapes)
    check = tuple(torch.randn(CHECK_BATCH, *s, generator=generator) for s in input_shapes)
    report: dict[str, Any] = {"torch": torch.__version__, "input_shapes": [list(s) for s in input_shapes],
                              "formats": {}}
    with torch.no_grad(), quiet_library_logs(not library_logs):
        expected = model(*check)
        for name in formats:
            exporter = EXPORTERS[name]
            path = out / exporter.filename
            start = time.perf_counter()
            try:
                exporter.save(model, example, path)
                runner, checker = exporter.load(path)
                got = runner(*check) if runner is not None else None
            except Exception as err:  # any failure of a third-party exporter: re-raised with the format named
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise ExportError(f"export to {name} failed: {first}") from err
            entry: dict[str, Any] = {"file": exporter.filename, "seconds": round(time.perf_counter() - start, 3),
                                     "checked_with": checker, "check_batch": CHECK_BATCH}
            if exporter.note:
                entry["note"] = exporter.note
            if got is not None:
                diff = float((got - expected).abs().max())
                scale = float(expected.abs().max())
                entry["max_abs_diff"] = diff
                if tuple(got.shape) != tuple(expected.shape) or diff > RELATIVE_TOLERANCE * max(scale, 1.0):
                    raise ExportError(f"the {name} export does not compute what the model does: output "
                                      f"{tuple(got.shape)} vs {tuple(expected.shape)}, max difference {diff:.3g}")
            report["formats"][name] = entry
    (out / "exports.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
