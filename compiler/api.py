"""The Python API: compile .arch text or files to a CompileResult (IR, PyTorch source, canonical .arch, summary)."""
from __future__ import annotations

import json
import linecache
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from compiler.backends.harness import generate_harness
from compiler.backends.printer import print_arch
from compiler.backends.pytorch import generate_source
from compiler.backends.summary import layer_table, summarize
from compiler.errors import ArchError, Span
from compiler.frontend import ast
from compiler.frontend.evaluate import Chooser
from compiler.frontend.expand import Expander, Relaxer
from compiler.frontend.parser import parse
from compiler.frontend.resolve import resolve
from compiler.ir.graph import Graph
from compiler.ir.ops import REGISTRY, OpRegistry
from compiler.limits import DEFAULT_LIMITS, Limits, limit_error
from compiler.passes.analyse import check_build
from compiler.passes.base import PassManager
from compiler.passes.pipeline import DEFAULT_PASSES, build_pipeline, check_passes


@dataclass(frozen=True)
class CompileOptions:
    input_shape: Sequence[int] | None = None   # replace the model's declared input shape (batch excluded)
    debug: bool = False                        # verify the IR after every pass
    registry: OpRegistry = REGISTRY
    limits: Limits = DEFAULT_LIMITS            # resource limits (compiler/limits.py)
    passes: Sequence[str] = DEFAULT_PASSES     # the IR -> IR passes, by name (compiler/passes/pipeline.py)

    def __post_init__(self) -> None:
        if self.input_shape is not None:
            object.__setattr__(self, "input_shape", input_shape_of(self.input_shape))
        object.__setattr__(self, "passes", check_passes(self.passes))
        if not isinstance(self.limits, Limits):
            raise TypeError(f"CompileOptions.limits must be a compiler.limits.Limits, got {self.limits!r}")


def input_shape_of(value: Any) -> tuple[int, ...]:
    """``input_shape`` (config or API): a list of positive integers, the batch dimension excluded."""
    where = Span("input_shape", 0, 0)
    hint = "e.g. input_shape=[3,32,32] (channels, height, width; the batch is implied)"
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not len(value):
        raise ArchError(f"input_shape must be a non-empty list of positive integers, got {value!r}", where, hint=hint)
    for d in value:
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise ArchError(f"input_shape must be a list of positive integers, got {list(value)!r} "
                            f"({d!r} is not)", where, hint=hint)
    return tuple(value)


def pipeline(options: CompileOptions = CompileOptions()) -> PassManager:
    """The IR -> IR passes every model goes through before code generation (``options.passes``)."""
    return build_pipeline(options.passes, options.registry, options.debug)


@dataclass
class CompileResult:
    graph: Graph                       # concrete IR, shapes and costs in meta
    source: str                        # standalone PyTorch source (model.py)
    arch: str                          # canonical .arch text (parse(arch) == graph)
    summary: dict[str, Any]            # what summary.json holds
    warnings: tuple[str, ...] = field(default=())
    harness: str = ""                  # standalone profiling script (profile.py, next to model.py)
    limits: Limits = field(default=DEFAULT_LIMITS, repr=False)   # what build() allows

    def build(self) -> Any:
        """Execute the generated source and return ``build_model()``: exactly what model.py gives users.

        The weights are allocated here, so the model's size is checked first (``limits.max_params``,
        ``limits.max_activation_mb``): every path that builds a model (exports, profiling, training) goes through
        this check. Compiling alone never allocates weights."""
        check_build(self.graph, self.limits)
        namespace = load_source(self.source, f"<generated {self.graph.name}.py>")
        return namespace["build_model"]()

    def layer_table(self, max_rows: int | None = None) -> str:
        return layer_table(self.summary, max_rows)

    def write(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.py").write_text(self.source)
        (out / "arch.arch").write_text(self.arch)
        (out / "summary.json").write_text(json.dumps(self.summary, indent=2) + "\n")
        if self.harness:
            (out / "profile.py").write_text(self.harness)
        return out


def load_source(source: str, filename: str) -> dict[str, Any]:
    code = compile(source, filename, "exec")
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # readable tracebacks
    namespace: dict[str, Any] = {"__name__": "generated_model"}
    exec(code, namespace)  # our own generated code: only validated identifiers and literals from the .arch text
    return namespace


def parse_module(text: str, filename: str = "<string>", registry: OpRegistry = REGISTRY,
                 limits: Limits = DEFAULT_LIMITS) -> ast.Module:
    """Text -> checked AST."""
    return resolve(parse(text, filename, limits), text, registry, limits)


def to_graph(module: ast.Module, source: str | None = None, params: Mapping[str, Any] | None = None,
             options: CompileOptions = CompileOptions(), chooser: Chooser | None = None,
             relax: Relaxer | None = None) -> Graph:
    """AST -> concrete IR (blocks expanded; no passes yet); with ``relax``, supernet IR (see expand.py)."""
    return Expander(module, source=source, registry=options.registry, chooser=chooser, relax=relax,
                    limits=options.limits).expand_model(params, options.input_shape)


def compile_graph(graph: Graph, source: str | None = None, options: CompileOptions = CompileOptions()) -> CompileResult:
    """Concrete IR -> passes -> backends."""
    graph = pipeline(options).run(graph, source)
    summary = summarize(graph)
    return CompileResult(graph, generate_source(graph, options.registry),
                         print_arch(graph, options.registry, header="canonical form, printed by AutoML-CodeGen"),
                         summary, tuple(graph.meta.get("warnings", ())), generate_harness(graph), options.limits)


def compile_source(text: str, filename: str = "<string>", *, options: CompileOptions | None = None,
                   **params: Any) -> CompileResult:
    """Compile .arch text; keyword arguments override the model's parameters. Raises ArchError on user errors."""
    options = options or CompileOptions()
    try:
        module = parse_module(text, filename, options.registry, options.limits)
        return compile_graph(to_graph(module, text, params, options), text, options)
    except ArchError as err:
        raise err.with_source(text) from None


def read_source(path: str | Path, limits: Limits = DEFAULT_LIMITS) -> str:
    """The text of an .arch file (UTF-8, a byte order mark dropped); never reads more than the source limit."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(limits.max_source_bytes + 1)  # bounded: /dev/zero or a huge file is not read whole
        if len(data) > limits.max_source_bytes:
            raise limit_error(limits, "max_source_bytes", f"the file is larger than {limits.max_source_bytes:,} bytes",
                              Span(str(p), 1, 1), needed=p.stat().st_size or None)
        return data.decode("utf-8-sig")
    except FileNotFoundError:
        raise ArchError(f"no such file: '{p}'", Span(str(p), 0, 0)) from None
    except IsADirectoryError:
        raise ArchError(f"'{p}' is a directory, not an .arch file", Span(str(p), 0, 0)) from None
    except UnicodeDecodeError as err:   # located: the line and column of the first byte that is not UTF-8
        raise _not_utf8(p, data, err) from None
    except OSError as err:
        raise ArchError(f"cannot read '{p}': {err}", Span(str(p), 0, 0)) from None


def _not_utf8(path: Path, data: bytes, err: UnicodeDecodeError) -> ArchError:
    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0           # utf-8-sig's offsets count after the mark
    offset = err.start + start
    line = data.count(b"\n", 0, offset) + 1
    line_start = max(data.rfind(b"\n", 0, offset) + 1, start)
    column = len(data[line_start:offset].decode("utf-8", "replace")) + 1
    return ArchError(f"not UTF-8 text: byte 0x{data[offset]:02x} cannot start or continue a character here",
                     Span(str(path), line, column), data.decode("utf-8-sig", "replace"),
                     hint="save the file as UTF-8 (names in .arch files are ASCII; other text may only be in comments)")


def compile_file(path: str | Path, *, options: CompileOptions | None = None, **params: Any) -> CompileResult:
    """Compile an .arch file; see ``compile_source``."""
    options = options or CompileOptions()
    return compile_source(read_source(path, options.limits), str(path), options=options, **params)


def parse_graph(text: str, filename: str = "<string>", **params: Any) -> Graph:
    """Text -> concrete IR without running passes (used for the printer round trip)."""
    try:
        return to_graph(parse_module(text, filename), text, params)
    except ArchError as err:
        raise err.with_source(text) from None
