"""How to add an op without editing AutoML-CodeGen: register it in your own module and name the module in the
config: `python -m compiler arch=my.arch ops=[examples.custom_ops]` (op modules are found from the current
directory, here the repository root, or from PYTHONPATH; a copy of this file as ./my_ops.py is `ops=[my_ops]`).

This file adds `channel_shuffle(groups)` (ShuffleNet) and `hardtanh(min, max)`.
"""
from compiler import Arg, Lowering, ShapeError, register_op, torch_call


def _shuffle_shape(attrs, in_shapes):
    channels = in_shapes[0][0]
    if channels % attrs["groups"]:
        raise ShapeError(f"channel_shuffle: groups={attrs['groups']} must divide the {channels} input channels")
    return in_shapes[0]


register_op(
    "channel_shuffle",
    args=[Arg("groups", int, minimum=1)],
    infer_shape=_shuffle_shape,
    # A pure-tensor forward expression: no submodule, nothing to count.
    lower=lambda a, i, o: Lowering(None, lambda m, x: f"{x[0]}.unflatten(1, ({a['groups']!r}, -1)).transpose(1, 2)"
                                                      f".flatten(1, 2)"),
    # fresh_output is left False (the default): with groups=1 or groups=channels, flatten() returns a view of the
    # input rather than a copy, and a ReLU after it must then not run in place.
    doc="Interleave channels across groups (ShuffleNet).",
)

register_op(
    "hardtanh",
    args=[Arg("min", float, -1.0), Arg("max", float, 1.0)],
    infer_shape=lambda a, i: i[0],
    lower=lambda a, i, o: Lowering(torch_call("nn.Hardtanh", a["min"], a["max"]), lambda m, x: f"{m}({x[0]})"),
    in_place_able=False,
    activation=True,
    doc="Clamp to [min, max].",
)
