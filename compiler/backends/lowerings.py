"""How nodes become PyTorch: the ``Lowering`` of one node, and the built-in ops' lowerings, one per op.

The IR registers what an op *means* (``compiler/ir/builtin_ops.py``: arguments, shape rule, cost, flags); this
module registers how each built-in op is *written* in the generated source, keyed by the op's name
(``@lowering("conv")``). The registry holds a lowering as an opaque callable ``(attrs, input_shapes, shape) ->
Lowering`` and the code generator looks it up there, so a user's op (``register_op(..., lower=...)``, see
examples/custom_ops.py) and a built-in one are lowered the same way.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Sequence

from torch import nn

from compiler.ir.graph import Shape
from compiler.ir.ops import REGISTRY, Attrs, OpRegistry  # importing compiler.ir registers the built-in ops first


@dataclass(frozen=True)
class Lowering:
    """How a node becomes PyTorch: an optional submodule (constructor source) and the forward expression.

    ``forward(module, inputs)`` receives ``self.<attr>`` (or None) and the input variable names and returns a
    Python expression. Constructor text must be built with ``torch_call`` so that only literals reach it.
    """

    module: str | None
    forward: Callable[[str | None, Sequence[str]], str]
    # For an ``in_place_able`` op without a module: the statement that computes the same value by overwriting
    # ``inputs[0]`` (``a += b``), used where that input is a fresh tensor nothing else reads (as torchvision's
    # ``out += identity``). Modules run in place through their ``inplace=True`` argument instead.
    in_place: Callable[[Sequence[str]], str] | None = None


LowerFn = Callable[[Attrs, Sequence[Shape], Shape], Lowering]


def torch_call(fn: str, *args: Any, **kwargs: Any) -> str:
    """Source text of ``fn(args, kw=...)`` where every argument is an int, float, bool or None literal.

    This is the only way constructor text is made, so nothing but numbers can reach generated code.
    """
    def literal(v: Any) -> str:
        if v is None or isinstance(v, (bool, int)):
            return repr(v)
        if isinstance(v, float) and math.isfinite(v):
            return repr(v)
        if isinstance(v, tuple) and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            return repr(v)
        raise TypeError(f"refusing to emit non-literal {v!r} into generated code")
    parts = [literal(a) for a in args] + [f"{k}={literal(v)}" for k, v in kwargs.items()]
    return f"{fn}({', '.join(parts)})"


@lru_cache(maxsize=None)
def _torch_defaults(cls: type) -> dict[str, Any]:
    return {name: p.default for name, p in inspect.signature(cls).parameters.items() if p.default is not p.empty}


def nn_call(cls: type, *args: Any, **kwargs: Any) -> str:
    """``torch_call`` text for constructing ``torch.nn`` module ``cls``, leaving out keyword arguments equal in
    value and type to the installed PyTorch's defaults (``nn.Conv2d(3, 64, kernel_size=3, bias=False)`` rather
    than spelling out ``dilation=1, groups=1``); every other value is written exactly as given."""
    defaults = _torch_defaults(cls)
    kept = {k: v for k, v in kwargs.items()
            if not (k in defaults and type(v) is type(defaults[k]) and v == defaults[k])}
    return torch_call(f"nn.{cls.__name__}", *args, **kept)


def lowering(op: str, registry: OpRegistry = REGISTRY) -> Callable[[LowerFn], LowerFn]:
    """Decorator: ``fn`` lowers op ``op`` (already registered, without a lowering)."""
    def add(fn: LowerFn) -> LowerFn:
        registry.set_lowering(op, fn)
        return fn
    return add


def _module_call(module: str | None, inputs: Sequence[str]) -> str:
    return f"{module}({inputs[0]})"


def _expression(forward: Callable[[Attrs, Sequence[str]], str]) -> LowerFn:
    """A lowering without a submodule: ``forward(attrs, inputs)`` is the whole expression."""
    return lambda a, i, o: Lowering(None, lambda m, x: forward(a, x))


# ---- convolutions ------------------------------------------------------------------------------
def _out(attrs: Attrs, in_shapes: Sequence[Shape]) -> int:
    return attrs["channels"] if attrs["channels"] is not None else in_shapes[0][0]


@lowering("conv")
def _conv(a: Attrs, i: Sequence[Shape], o: Shape) -> Lowering:
    return Lowering(nn_call(nn.Conv2d, i[0][0], _out(a, i), kernel_size=a["kernel"], stride=a["stride"],
                            padding=a["padding"], dilation=a["dilation"], groups=a["groups"], bias=a["bias"]),
                    _module_call)


@lowering("dwconv")
def _dwconv(a: Attrs, i: Sequence[Shape], o: Shape) -> Lowering:
    return Lowering(nn_call(nn.Conv2d, i[0][0], o[0], kernel_size=a["kernel"], stride=a["stride"],
                            padding=a["padding"], dilation=a["dilation"], groups=i[0][0], bias=a["bias"]),
                    _module_call)


@lowering("sepconv")
def _sepconv(a: Attrs, i: Sequence[Shape], o: Shape) -> Lowering:
    depthwise = nn_call(nn.Conv2d, i[0][0], i[0][0], kernel_size=a["kernel"], stride=a["stride"],
                        padding=a["padding"], dilation=a["dilation"], groups=i[0][0], bias=a["bias"])
    pointwise = nn_call(nn.Conv2d, i[0][0], a["channels"], kernel_size=1, bias=a["bias"])
    return Lowering(f"nn.Sequential({depthwise}, {pointwise})", _module_call)


# ---- normalisation, activations, regularisation ------------------------------------------------
@lowering("bn")
def _bn(a: Attrs, i: Sequence[Shape], o: Shape) -> Lowering:
    cls = {1: nn.BatchNorm1d, 3: nn.BatchNorm2d}[len(i[0])]
    return Lowering(nn_call(cls, i[0][0], eps=a["eps"], momentum=a["momentum"], affine=a["affine"]), _module_call)


def _activation(module: str) -> LowerFn:
    return lambda a, i, o: Lowering(f"nn.{module}()", _module_call)


for _op, _module in [("relu", "ReLU"), ("relu6", "ReLU6"), ("silu", "SiLU"), ("hardswish", "Hardswish"),
                     ("hardsigmoid", "Hardsigmoid"), ("gelu", "GELU"), ("sigmoid", "Sigmoid"), ("tanh", "Tanh")]:
    lowering(_op)(_activation(_module))


@lowering("dropout")
def _dropout(a: Attrs, i: Sequence[Shape], o: Shape) -> Lowering:
    return Lowering(nn_call(nn.Dropout, p=a["p"]), _module_call)


@lowering("drop_path")
def _drop_path(a: Attrs, i: Sequence[Shape], o: Shape) -> Lowering:
    ones = ", 1" * len(i[0])
    # nn.Dropout1d on an [N, 1, 1] tensor of ones is a per-sample mask already scaled by 1 / (1 - p); the trainer
    # sets its p every epoch (trainer.drop_path)
    return Lowering(nn_call(nn.Dropout1d, p=a["p"]),
                    lambda m, x: (f"{x[0]} * {m}({x[0]}.new_ones({x[0]}.shape[0], 1, 1)).view(-1{ones}) "
                                  f"if self.training and {m}.p else {x[0]}"))


# ---- pooling -----------------------------------------------------------------------------------
@lowering("maxpool")
def _maxpool(a: Attrs, i: Sequence[Shape], o: Shape) -> Lowering:
    return Lowering(nn_call(nn.MaxPool2d, a["kernel"], stride=a["stride"], padding=a["padding"],
                            ceil_mode=a["ceil_mode"]), _module_call)


@lowering("avgpool")
def _avgpool(a: Attrs, i: Sequence[Shape], o: Shape) -> Lowering:
    return Lowering(nn_call(nn.AvgPool2d, a["kernel"], stride=a["stride"], padding=a["padding"],
                            ceil_mode=a["ceil_mode"], count_include_pad=a["count_include_pad"]), _module_call)


@lowering("adaptive_avgpool")
def _adaptive_avgpool(a: Attrs, i: Sequence[Shape], o: Shape) -> Lowering:
    return Lowering(nn_call(nn.AdaptiveAvgPool2d, a["size"]), _module_call)


@lowering("adaptive_maxpool")
def _adaptive_maxpool(a: Attrs, i: Sequence[Shape], o: Shape) -> Lowering:
    return Lowering(nn_call(nn.AdaptiveMaxPool2d, a["size"]), _module_call)


lowering("global_avgpool")(_expression(lambda a, x: f"{x[0]}.mean((2, 3), keepdim=True)"))


# ---- linear and shape ops ----------------------------------------------------------------------
@lowering("linear")
def _linear(a: Attrs, i: Sequence[Shape], o: Shape) -> Lowering:
    return Lowering(nn_call(nn.Linear, i[0][0], a["features"], bias=a["bias"]), _module_call)


lowering("flatten")(_expression(lambda a, x: f"torch.flatten({x[0]}, 1)"))
lowering("identity")(_expression(lambda a, x: x[0]))
lowering("zero")(_expression(lambda a, x: f"{x[0]}.mul(0.0)" if a["stride"] == 1
                             else f"{x[0]}[:, :, ::{a['stride']}, ::{a['stride']}].mul(0.0)"))
lowering("scale")(_expression(lambda a, x: f"{x[0]} * {a['factor']!r}"))
lowering("crop")(_expression(lambda a, x: f"{x[0]}[:, :, {a['top']}:, {a['left']}:]"))


# ---- merging ops (two or more inputs) ----------------------------------------------------------
@lowering("add")
def _add(a: Attrs, i: Sequence[Shape], o: Shape) -> Lowering:
    return Lowering(None, lambda m, x: " + ".join(x), in_place=lambda x: f"{x[0]} += {' + '.join(x[1:])}")


lowering("concat")(_expression(lambda a, x: f"torch.cat([{', '.join(x)}], dim=1)"))
lowering("mul")(_expression(lambda a, x: " * ".join(x)))

# ---- made by the compiler ----------------------------------------------------------------------
lowering("input")(_expression(lambda a, x: ""))   # graph inputs are forward()'s arguments: never lowered
# `weights` (the architecture's mixing weights), `active` (GDAS' one path per decision, or None) and `mix` exist
# only in the supernet template
lowering("mixed")(_expression(lambda a, x: f"mix(weights[{a['decision']}], [{', '.join(x)}], active, {a['decision']})"))
