"""The built-in ops' semantics. Each is one ``register_op`` call: arguments, shape rule, cost and flags.

Their PyTorch lowerings live with the backend (``compiler/backends/lowerings.py``, one registration per op), so
the IR imports no torch.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from compiler.ir.graph import Shape
from compiler.ir.ops import Arg, ShapeError, register_op


def _register_builtin(name: str, **spec: Any) -> Any:
    """The built-in ops make new tensors unless they say otherwise (user ops must say so: see register_op)."""
    spec.setdefault("fresh_output", True)
    return register_op(name, **spec)

Attrs = dict[str, Any]


def _spatial(op: str, shape: Shape) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError(f"'{op}' expects a [channels, height, width] input, got {_fmt(shape)}"
                         + ("; it cannot follow 'flatten' or 'linear'" if len(shape) == 1 else ""))
    return shape  # type: ignore[return-value]


def _fmt(shape: Shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _window(op: str, size: int, kernel: int, stride: int, padding: int, dilation: int = 1,
            ceil_mode: bool = False) -> int:
    span = dilation * (kernel - 1) + 1
    num = size + 2 * padding - span
    if num < 0:
        raise ShapeError(f"'{op}' window of {span} (kernel {kernel}, dilation {dilation}) does not fit an input "
                         f"of size {size} with padding {padding}")
    out = (math.ceil(num / stride) if ceil_mode else num // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


# ---- convolutions ------------------------------------------------------------------------------
def _conv_normalize(attrs: Attrs) -> Attrs:
    if attrs.get("padding") is None:
        attrs["padding"] = (attrs["kernel"] - 1) // 2 * attrs.get("dilation", 1)
    return attrs


def _conv_shape(op: str, attrs: Attrs, cin: int, cout: int, groups: int, shape: Shape) -> Shape:
    c, h, w = _spatial(op, shape)
    if c % groups or cout % groups:
        raise ShapeError(f"'{op}' groups={groups} must divide both input channels ({c}) and output channels ({cout})")
    k, s, p, d = attrs["kernel"], attrs["stride"], attrs["padding"], attrs["dilation"]
    return (cout, _window(op, h, k, s, p, d), _window(op, w, k, s, p, d))


def _out(attrs: Attrs, in_shapes: Sequence[Shape]) -> int:
    """Output channels: the `channels` argument, or the input's channel count when it is left out."""
    return attrs["channels"] if attrs["channels"] is not None else in_shapes[0][0]


_CONV_ARGS = (
    Arg("kernel", int, 1, "kernel size (square)", minimum=1),
    Arg("stride", int, 1, minimum=1),
    Arg("padding", int, None, "default: (kernel - 1) // 2 * dilation", minimum=0),
    Arg("dilation", int, 1, minimum=1),
)

_register_builtin(
    "conv",
    args=(Arg("channels", int, None, "output channels (default: as many as the input has)", minimum=1),
          *_CONV_ARGS, Arg("groups", int, 1, minimum=1), Arg("bias", bool, True)),
    normalize=_conv_normalize,
    infer_shape=lambda a, i: _conv_shape("conv", a, i[0][0], _out(a, i), a["groups"], i[0]),
    count=lambda a, i, o: (_out(a, i) * i[0][0] // a["groups"] * a["kernel"] ** 2 + a["bias"] * _out(a, i),
                           o[0] * o[1] * o[2] * (i[0][0] // a["groups"]) * a["kernel"] ** 2),
    doc="2-D convolution (torch.nn.Conv2d); input channels come from the input shape.",
)

_register_builtin(
    "dwconv",
    args=(*_CONV_ARGS, Arg("multiplier", int, 1, "output channels per input channel", minimum=1),
          Arg("bias", bool, True)),
    normalize=_conv_normalize,
    infer_shape=lambda a, i: _conv_shape("dwconv", a, i[0][0], i[0][0] * a["multiplier"], i[0][0], i[0]),
    count=lambda a, i, o: (o[0] * a["kernel"] ** 2 + a["bias"] * o[0], o[0] * o[1] * o[2] * a["kernel"] ** 2),
    doc="Depthwise 2-D convolution (groups = input channels).",
)


def _sepconv_count(a: Attrs, i: Sequence[Shape], o: Shape) -> tuple[int, int]:
    cin, k = i[0][0], a["kernel"]
    params = cin * k * k + cin * a["channels"] + a["bias"] * (cin + a["channels"])
    mid_hw = o[1] * o[2]
    return params, mid_hw * cin * k * k + mid_hw * cin * a["channels"]


_register_builtin(
    "sepconv",
    args=(Arg("channels", int, minimum=1), *_CONV_ARGS, Arg("bias", bool, True)),
    normalize=_conv_normalize,
    infer_shape=lambda a, i: _conv_shape("sepconv", a, i[0][0], a["channels"], 1, i[0]),
    count=_sepconv_count,
    doc="Separable convolution: depthwise kxk then pointwise 1x1.",
)


# ---- normalisation, activations, regularisation ------------------------------------------------
def _bn_shape(a: Attrs, i: Sequence[Shape]) -> Shape:
    if len(i[0]) not in (1, 3):
        raise ShapeError(f"'bn' expects [channels, height, width] or [features], got {_fmt(i[0])}")
    return i[0]


_register_builtin(
    "bn", args=(Arg("eps", float, 1e-5, "added to the variance; positive", minimum=1e-12),
                Arg("momentum", float, 0.1, minimum=0.0), Arg("affine", bool, True)),
    infer_shape=_bn_shape, count=lambda a, i, o: (2 * i[0][0] * a["affine"], 0),
    doc="Batch normalisation over channels (BatchNorm2d) or features (BatchNorm1d).",
)


def _activation(name: str, doc: str, in_place: bool = True) -> None:
    _register_builtin(name, infer_shape=lambda a, i: i[0], in_place_able=in_place, activation=True, doc=doc)


for _name, _doc in [("relu", "max(x, 0)"), ("relu6", "min(max(x, 0), 6)"), ("silu", "x * sigmoid(x)"),
                    ("hardswish", "x * relu6(x + 3) / 6"), ("hardsigmoid", "relu6(x + 3) / 6")]:
    _activation(_name, _doc)
for _name, _doc in [("gelu", "Gaussian error linear unit"), ("sigmoid", "1 / (1 + e^-x)"),
                    ("tanh", "hyperbolic tangent")]:
    _activation(_name, _doc, in_place=False)

_register_builtin(
    "dropout", args=(Arg("p", float, 0.5, "probability of zeroing an element", minimum=0.0, maximum=1.0),),
    infer_shape=lambda a, i: i[0], fresh_output=False,
    doc="Dropout (identity at evaluation).",
)


_register_builtin(
    "drop_path", args=(Arg("p", float, 0.0, "probability of dropping a sample's path (the trainer's "
                                            "drop_path option overrides it per epoch)", minimum=0.0),),
    infer_shape=lambda a, i: i[0], fresh_output=False,  # at evaluation (or p = 0) the input itself
    doc="Drop-path (DARTS, FractalNet): in training, each sample's value is zeroed with probability p and the "
        "others scaled by 1 / (1 - p); identity at evaluation. Lowered to an nn.Dropout1d whose p the trainer "
        "sets every epoch (trainer.drop_path).",
)


# ---- pooling -----------------------------------------------------------------------------------
def _pool_normalize(attrs: Attrs) -> Attrs:
    if attrs.get("stride") is None:
        attrs["stride"] = attrs["kernel"]
    return attrs


def _pool_shape(op: str) -> Any:
    def rule(a: Attrs, i: Sequence[Shape]) -> Shape:
        c, h, w = _spatial(op, i[0])
        if a["padding"] * 2 > a["kernel"]:
            raise ShapeError(f"'{op}' padding ({a['padding']}) must be at most half the kernel ({a['kernel']})")
        k, s, p, cm = a["kernel"], a["stride"], a["padding"], a["ceil_mode"]
        return (c, _window(op, h, k, s, p, 1, cm), _window(op, w, k, s, p, 1, cm))
    return rule


_POOL_ARGS = (Arg("kernel", int, minimum=1), Arg("stride", int, None, "default: kernel", minimum=1),
              Arg("padding", int, 0, minimum=0), Arg("ceil_mode", bool, False))

_register_builtin(
    "maxpool", args=_POOL_ARGS, normalize=_pool_normalize, infer_shape=_pool_shape("maxpool"),
    doc="Max pooling.",
)
_register_builtin(
    "avgpool", args=(*_POOL_ARGS, Arg("count_include_pad", bool, True)), normalize=_pool_normalize,
    infer_shape=_pool_shape("avgpool"),
    doc="Average pooling.",
)


def _adaptive_shape(op: str) -> Any:
    def rule(a: Attrs, i: Sequence[Shape]) -> Shape:
        c, _, _ = _spatial(op, i[0])
        return (c, a["size"], a["size"])
    return rule


_register_builtin(
    "adaptive_avgpool", args=(Arg("size", int, 1, minimum=1),), infer_shape=_adaptive_shape("adaptive_avgpool"),
    doc="Adaptive average pooling to size x size.",
)
_register_builtin(
    "adaptive_maxpool", args=(Arg("size", int, 1, minimum=1),), infer_shape=_adaptive_shape("adaptive_maxpool"),
    doc="Adaptive max pooling to size x size.",
)
_register_builtin(
    "global_avgpool", infer_shape=lambda a, i: (_spatial("global_avgpool", i[0])[0], 1, 1),
    doc="Mean over height and width, keeping [C, 1, 1] (so squeeze-excite can multiply it back).",
)


# ---- linear and shape ops ----------------------------------------------------------------------
def _linear_shape(a: Attrs, i: Sequence[Shape]) -> Shape:
    if len(i[0]) != 1:
        raise ShapeError(f"'linear' expects a flat [features] input, got {_fmt(i[0])}; add 'flatten' before it")
    return (a["features"],)


_register_builtin(
    "linear", args=(Arg("features", int, doc="output features", minimum=1), Arg("bias", bool, True)),
    infer_shape=_linear_shape,
    count=lambda a, i, o: (i[0][0] * a["features"] + a["bias"] * a["features"], i[0][0] * a["features"]),
    doc="Fully connected layer (torch.nn.Linear).",
)
_register_builtin(
    "flatten", infer_shape=lambda a, i: (math.prod(i[0]),), fresh_output=False,
    doc="Flatten everything but the batch dimension.",
)
_register_builtin(
    "identity", infer_shape=lambda a, i: i[0], fresh_output=False, returns_input=True,
    doc="The input, unchanged (a 'skip' option in search spaces).",
)


def _zero_shape(a: Attrs, i: Sequence[Shape]) -> Shape:
    if a["stride"] == 1:
        return i[0]
    c, h, w = _spatial("zero", i[0])
    return (c, -(-h // a["stride"]), -(-w // a["stride"]))


_register_builtin(
    "zero", args=(Arg("stride", int, 1, minimum=1),), infer_shape=_zero_shape, zero_output=True,
    doc="Zeros shaped like the (strided) input: the 'none' op of cell search spaces.",
)
_register_builtin(
    "scale", args=(Arg("factor", float),), infer_shape=lambda a, i: i[0],
    doc="Multiply by a constant.",
)


# ---- merging ops (two or more inputs) ----------------------------------------------------------
def _add_shape(a: Attrs, i: Sequence[Shape]) -> Shape:
    for k, s in enumerate(i[1:], start=2):
        if s != i[0]:
            what = "channels" if len(s) == len(i[0]) and s[1:] == i[0][1:] else "shapes"
            raise ShapeError(f"'add' inputs must have the same shape: input 1 is {_fmt(i[0])}, input {k} is "
                             f"{_fmt(s)} ({what} differ)")
    return i[0]


def _concat_shape(a: Attrs, i: Sequence[Shape]) -> Shape:
    for k, s in enumerate(i[1:], start=2):
        if len(s) != len(i[0]) or s[1:] != i[0][1:]:
            raise ShapeError(f"'concat' inputs must agree in all but the channel dimension: input 1 is "
                             f"{_fmt(i[0])}, input {k} is {_fmt(s)}")
    return (sum(s[0] for s in i), *i[0][1:])


def _broadcast_shape(a: Attrs, i: Sequence[Shape]) -> Shape:
    out = list(i[0])
    for k, s in enumerate(i[1:], start=2):
        if len(s) != len(out) or any(x != y and 1 not in (x, y) for x, y in zip(out, s)):
            raise ShapeError(f"'mul' inputs must broadcast: {_fmt(tuple(out))} and input {k} {_fmt(s)}")
        out = [max(x, y) for x, y in zip(out, s)]
    return tuple(out)


_register_builtin(
    "add", num_inputs=None, infer_shape=_add_shape, in_place_able=True, sums_inputs=True,
    doc="Element-wise sum of two or more inputs of the same shape.",
)
_register_builtin(
    "concat", num_inputs=None, infer_shape=_concat_shape,
    doc="Concatenate along channels.",
)
_register_builtin(
    "mul", num_inputs=None, infer_shape=_broadcast_shape,
    doc="Element-wise product with broadcasting (e.g. squeeze-excite gates).",
)


# ---- graph inputs ------------------------------------------------------------------------------
def _input_shape(a: Attrs, i: Sequence[Shape]) -> Shape:
    return tuple(a["shape"])


_register_builtin(
    "input", num_inputs=0, infer_shape=_input_shape, fresh_output=False, internal=True,
    doc="A graph input; attribute 'shape' is the per-sample shape (set by the model's input statement).",
)


# ---- cropping ----------------------------------------------------------------------------------
def _crop_shape(a: Attrs, i: Sequence[Shape]) -> Shape:
    c, h, w = _spatial("crop", i[0])
    if a["top"] >= h or a["left"] >= w:
        raise ShapeError(f"'crop' removes {a['top']} rows and {a['left']} columns of a {h}x{w} input")
    return (c, h - a["top"], w - a["left"])


_register_builtin(
    "crop", args=(Arg("top", int, 1, minimum=0), Arg("left", int, 1, minimum=0)), infer_shape=_crop_shape,
    fresh_output=False,
    doc="Drop the first rows and columns (the shifted path of DARTS' factorized reduce).",
)


# ---- supernets (DARTS) -------------------------------------------------------------------------
def _mixed_shape(a: Attrs, i: Sequence[Shape]) -> Shape:
    for k, s in enumerate(i[1:], start=2):
        if s != i[0]:
            raise ShapeError(f"the options of a relaxed choice must all give one output shape to be mixed in a "
                             f"supernet; got {_fmt(i[0])} from option 1 and {_fmt(s)} from option {k}")
    return i[0]


_register_builtin(
    "mixed", args=(Arg("decision", int, doc="index of the relaxed decision (its architecture logits)", minimum=0),),
    num_inputs=None, infer_shape=_mixed_shape, internal=True,
    doc="A relaxed choice in a supernet: the options' outputs weighted by softmax(alpha) of one decision and summed.",
)
