"""The canonical .arch printer: parse(print(ir)) == ir, over the examples and over generated programs."""
from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from compiler import compile_file, compile_source, parse_graph

EXAMPLES = sorted(Path(__file__).resolve().parents[1].joinpath("examples").glob("*.arch"))


def _round_trip(result) -> None:  # noqa: ANN001
    again = parse_graph(result.arch, "printed.arch")
    assert again == result.graph
    assert [dict(n.attrs) for n in again.nodes] == [dict(n.attrs) for n in result.graph.nodes]
    # Printing is a fixed point: the canonical text of the re-parsed graph is the same text.
    assert compile_source(result.arch).arch == result.arch


def test_examples_round_trip() -> None:
    assert EXAMPLES, "no examples found"
    for path in EXAMPLES:
        _round_trip(compile_file(path))


UNARY = ["relu", "relu6", "gelu", "silu", "sigmoid", "hardswish", "hardsigmoid", "tanh", "identity", "bn",
         "dropout(0.25)", "scale(0.5)", "scale(-1.25e-3)", "conv({c}, 1)", "conv({c}, 3, bias=false)",
         "dwconv(3)", "sepconv({c}, 3)", "avgpool(3, stride=1, padding=1, count_include_pad=false)",
         "maxpool(3, stride=1, padding=1)", "zero"]


@st.composite
def programs(draw: st.DrawFn) -> str:
    """Random well-shaped programs: chains of shape-preserving layers, branches merged by add/mul/concat."""
    c = draw(st.sampled_from([2, 4, 6]))
    lines = ["model gen() {", f"    input x: [{c}, 6, 6]"]
    values = ["x"]
    channels = {"x": c}
    for i in range(draw(st.integers(1, 8))):
        src = draw(st.sampled_from(values))
        if draw(st.booleans()) and len(values) > 1:
            other = draw(st.sampled_from(values))
            if channels[other] == channels[src]:
                op = draw(st.sampled_from(["add", "mul"]))
                lines.append(f"    v{i} = ({src}, {other}) -> {op}")
                channels[f"v{i}"] = channels[src]
            else:
                lines.append(f"    v{i} = ({src}, {other}) -> concat")
                channels[f"v{i}"] = channels[src] + channels[other]
        else:
            ops = draw(st.lists(st.sampled_from(UNARY), min_size=1, max_size=3))
            chain = " -> ".join(op.format(c=channels[src]) for op in ops)
            lines.append(f"    v{i} = {src} -> {chain}")
            channels[f"v{i}"] = channels[src]
        values.append(f"v{i}")
    lines.append(f"    output {values[-1]} -> global_avgpool -> flatten -> linear(3)")
    lines.append("}")
    return "\n".join(lines)


@given(programs())
def test_generated_programs_round_trip(text: str) -> None:
    _round_trip(compile_source(text, "gen.arch"))
