"""The op registry: the closed set of ops the IR may contain, each registered once with everything about it.

An op registers its argument schema, its shape rule, its parameter and MAC count, its flags and its PyTorch
lowering in one ``OpSpec``. Adding an op is one ``register_op`` call, in this project or in a user's module named
in the config (``ops=[my_package.my_ops]``); the parser and the passes never list op names. The IR holds a
lowering as an opaque callable (what it returns is the backend's business: ``compiler/backends/lowerings.py``), so
this module imports no torch; the built-in ops get theirs from the backend (``OpRegistry.set_lowering``).
"""
from __future__ import annotations

import difflib
import importlib
import math
import os
import pickle
import re
import sys
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping, Sequence

from compiler.ir.graph import Shape

REQUIRED = object()  # marks an argument without a default


class ShapeError(ValueError):
    """Raised by a shape rule; the shape pass turns it into an ArchError at the node's source location."""


class ArgError(ValueError):
    """Raised while binding arguments; the expander turns it into a located ArchError."""


@dataclass(frozen=True)
class Arg:
    name: str
    type: type                          # int, float or bool
    default: Any = REQUIRED
    doc: str = ""
    minimum: float | None = None        # inclusive lower bound for numbers
    maximum: float | None = None        # inclusive upper bound for numbers

    def check(self, op: str, value: Any) -> Any:
        """Validate (and normalise) one argument value; only numbers and booleans ever reach the IR."""
        if value is None and self.default is None:
            return None
        if self.type is bool:
            if not isinstance(value, bool):
                raise ArgError(f"argument '{self.name}' of '{op}' must be true or false, got {_show(value)}")
            return value
        if isinstance(value, bool):
            raise ArgError(f"argument '{self.name}' of '{op}' must be a number, got {_show(value)}")
        if self.type is int:
            if isinstance(value, float):
                if not value.is_integer():
                    raise ArgError(f"argument '{self.name}' of '{op}' must be an integer, got {value!r}")
                value = int(value)
            if not isinstance(value, int):
                raise ArgError(f"argument '{self.name}' of '{op}' must be an integer, got {_show(value)}")
        elif self.type is float:
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ArgError(f"argument '{self.name}' of '{op}' must be a finite number, got {_show(value)}")
            value = float(value)
        if self.minimum is not None and value < self.minimum:
            raise ArgError(f"argument '{self.name}' of '{op}' must be >= {self.minimum:g}, got {value!r}")
        if self.maximum is not None and value > self.maximum:
            raise ArgError(f"argument '{self.name}' of '{op}' must be <= {self.maximum:g}, got {value!r}")
        return value


def _show(value: Any) -> str:
    return "true" if value is True else "false" if value is False else repr(value)


Attrs = Mapping[str, Any]
# (attrs, input shapes, output shape) -> the backend's Lowering (compiler/backends/lowerings.py); opaque here
LowerFn = Callable[[Attrs, Sequence[Shape], Shape], Any]


@dataclass(frozen=True)
class OpSpec:
    name: str
    args: tuple[Arg, ...]
    infer_shape: Callable[[Attrs, Sequence[Shape]], Shape]
    lower: LowerFn | None                          # None until the backend adds it (the built-in ops)
    num_inputs: int | None = 1                     # None: two or more (add, concat, mul)
    count: Callable[[Attrs, Sequence[Shape], Shape], tuple[int, int]] = lambda a, i, o: (0, 0)  # (params, MACs)
    normalize: Callable[[dict[str, Any]], dict[str, Any]] = lambda attrs: attrs  # fills derived defaults
    fresh_output: bool = False                     # output never aliases an input (an in-place op may follow);
    #                                                unknown ops may return views (reshape, slicing), so no default
    in_place_able: bool = False                    # may overwrite its first input when that is fresh and unshared
    activation: bool = False                       # element-wise activation (its output may be saved for grad)
    internal: bool = False                         # made by the compiler only (graph inputs, supernet mixes);
    #                                                .arch text cannot name it
    # Algebraic properties the simplification pass relies on (see register_op):
    returns_input: bool = False                    # the output is the single input, unchanged (identity)
    zero_output: bool = False                      # the output is all zeros whatever the input's values
    sums_inputs: bool = False                      # the output is the element-wise sum of the inputs (add)
    doc: str = ""
    module: str = field(default="", compare=False)  # the Python module that registered it

    def bind(self, positional: Sequence[Any], keywords: Mapping[str, Any]) -> dict[str, Any]:
        """Arguments as written -> a complete, validated, normalised attribute dict (raises ArgError)."""
        if len(positional) > len(self.args):
            raise ArgError(f"'{self.name}' takes at most {len(self.args)} positional argument(s) "
                           f"({self.signature()}), got {len(positional)}")
        values: dict[str, Any] = {}
        for arg, value in zip(self.args, positional):
            values[arg.name] = value
        known = {a.name for a in self.args}
        for key, value in keywords.items():
            if key not in known:
                hint = difflib.get_close_matches(key, known, n=1)
                more = f"; did you mean '{hint[0]}'?" if hint else f"; it takes {self.signature()}"
                raise ArgError(f"'{self.name}' has no argument '{key}'{more}")
            if key in values:
                raise ArgError(f"argument '{key}' of '{self.name}' is given twice")
            values[key] = value
        attrs: dict[str, Any] = {}
        for arg in self.args:
            if arg.name in values:
                attrs[arg.name] = arg.check(self.name, values[arg.name])
            elif arg.default is REQUIRED:
                raise ArgError(f"'{self.name}' needs argument '{arg.name}' ({self.signature()})")
            else:
                attrs[arg.name] = arg.default
        return self.normalize(attrs)

    def signature(self) -> str:
        parts = [a.name if a.default is REQUIRED
                 else f"{a.name}={_show(a.default) if a.default is not None else 'auto'}" for a in self.args]
        return f"{self.name}({', '.join(parts)})"


class OpRegistry:
    def __init__(self) -> None:
        self._ops: dict[str, OpSpec] = {}

    def register(self, spec: OpSpec, *, replace: bool = False) -> OpSpec:
        if spec.name in self._ops and not replace and self._ops[spec.name] != spec:
            raise ValueError(f"op '{spec.name}' is already registered "
                             f"(by {self._ops[spec.name].module or 'the project'})")
        if not spec.name.isidentifier():
            raise ValueError(f"op name {spec.name!r} is not an identifier")
        self._ops[spec.name] = spec
        return spec

    def set_lowering(self, name: str, lower: LowerFn) -> OpSpec:
        """Add the lowering of a registered op that has none (the backend does so for the built-in ops)."""
        spec = self._ops.get(name)
        if spec is None:
            raise ValueError(f"cannot add a lowering for '{name}': no such op is registered")
        if spec.lower is not None and spec.lower is not lower:
            raise ValueError(f"op '{name}' already has a lowering (registered by {spec.module or 'the project'})")
        self._ops[name] = replace(spec, lower=lower)
        return self._ops[name]

    def get(self, name: str) -> OpSpec | None:
        return self._ops.get(name)

    def __getitem__(self, name: str) -> OpSpec:
        return self._ops[name]

    def __contains__(self, name: object) -> bool:
        return name in self._ops

    def names(self) -> list[str]:
        return sorted(self._ops)

    def suggest(self, name: str, extra: Iterable[str] = ()) -> str | None:
        public = [op for op, spec in self._ops.items() if not spec.internal]
        hits = difflib.get_close_matches(name, [*public, *extra], n=1)
        return hits[0] if hits else None

    def unknown_hint(self, name: str, blocks: Iterable[str] = ()) -> str:
        """The hint of an 'unknown op or block' error: the closest op or block, else how to add an op of one's own."""
        close = self.suggest(name, blocks)
        if close:
            return f"did you mean '{close}'?"
        return ("an op of your own is registered by a Python module named on the command line: ops=[my_ops] "
                "(see examples/custom_ops.py)")

    def __reduce__(self) -> str:
        """The global registry pickles by reference (a Space sent to a worker holds it): the receiving process
        has the same ops once it has imported the same op modules. Other registries hold lambdas: not picklable."""
        if self is REGISTRY:
            return "REGISTRY"
        raise pickle.PicklingError("only the global op registry (compiler.ir.ops.REGISTRY) can be pickled")


REGISTRY = OpRegistry()


def register_op(name: str, *, args: Sequence[Arg] = (), infer_shape: Callable, lower: LowerFn | None = None,
                num_inputs: int | None = 1, count: Callable | None = None, normalize: Callable | None = None,
                fresh_output: bool = False, in_place_able: bool = False, activation: bool = False,
                internal: bool = False, returns_input: bool = False, zero_output: bool = False,
                sums_inputs: bool = False, doc: str = "", registry: OpRegistry = REGISTRY,
                replace: bool = False) -> OpSpec:
    """Register an op. This is the public extension point: see examples/custom_ops.py.

    ``lower(attrs, input_shapes, shape)`` returns the op's ``compiler.Lowering`` (its PyTorch source); the
    built-in ops leave it out here and get it from ``compiler/backends/lowerings.py``.

    ``fresh_output=True`` promises that the op's output is a new tensor sharing memory with no input, which lets
    the code generator run a following ReLU in place. Leave it False for anything that may return a view
    (reshape, transpose, slicing, identity): an in-place op would then overwrite the op's input. With
    ``fresh_output=True``, also set ``activation=True`` when the op's backward reads its own output (sigmoid-like).

    The algebraic flags let the simplification pass remove work without knowing op names; each is a promise
    about values in training and evaluation alike (so not for dropout): ``returns_input`` (users read the input
    instead), ``zero_output`` (a summing op may drop it: x + 0 = x) and ``sums_inputs`` (the output is the
    element-wise sum of same-shaped inputs, so zero inputs are dropped and one left over is forwarded).
    """
    spec = OpSpec(name=name, args=tuple(args), infer_shape=infer_shape, lower=lower, num_inputs=num_inputs,
                  count=count or (lambda a, i, o: (0, 0)), normalize=normalize or (lambda a: a),
                  fresh_output=fresh_output, in_place_able=in_place_able, activation=activation,
                  internal=internal, returns_input=returns_input, zero_output=zero_output,
                  sums_inputs=sums_inputs, doc=doc, module=_caller_module())
    return registry.register(spec, replace=replace)


def _caller_module() -> str:
    import inspect
    frame = inspect.currentframe()
    caller = frame.f_back.f_back if frame and frame.f_back else None
    return caller.f_globals.get("__name__", "") if caller else ""


_MODULE_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


def _working_directory_importable() -> None:
    """Let ``ops=[my_ops]`` find ``my_ops.py`` in the current directory, as ``python -m`` does, also where it did not
    put the directory on sys.path (an installed entry point, a worker process). Appended: it never shadows an
    installed package."""
    cwd = os.getcwd()
    if not any(os.path.abspath(entry or os.curdir) == cwd for entry in sys.path):
        sys.path.append(cwd)


def load_op_modules(modules: Iterable[str] | str, where: str = "ops") -> None:
    """Import users' op modules (dotted module paths from the config key ``where``); importing registers their ops.

    The modules are the user's own code, imported by design; they are found from the current directory or
    PYTHONPATH. A name that is not a dotted module path, or a module that fails to import, is an error naming the
    key."""
    from compiler.errors import ArchError, Span
    if isinstance(modules, str):  # ops=examples.custom_ops rather than ops=[examples.custom_ops]
        modules = [modules]
    if modules:
        _working_directory_importable()
    hint = "e.g. ops=[examples.custom_ops]: dotted module paths, found from the current directory or PYTHONPATH"
    for module in modules:
        if not isinstance(module, str) or not _MODULE_PATH.match(module):
            raise ArchError(f"'{where}' lists {module!r}, which is not a module path", Span(where, 0, 0), hint=hint)
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ArchError(f"cannot import op module '{module}': {err}", Span(where, 0, 0),
                            hint="run from the folder that holds the module, put it on PYTHONPATH, or install its "
                                 "package") from err
        except Exception as err:  # the user's module raised while registering its ops
            raise ArchError(f"op module '{module}' failed while importing: {type(err).__name__}: {err}",
                            Span(where, 0, 0), hint="debug=true shows the traceback") from err
