"""compiler/limits.py: every limit refuses at the right place with a hint naming it, raising it lets the input through,
and a plain compile never builds the model (only exports, profiling and training do, after the size check)."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from compiler import ArchError, CompileOptions, compile_source
from compiler.api import CompileResult, read_source
from compiler.limits import DEFAULT_LIMITS, Limits
from compiler.passes.analyse import check_build
from compiler.space import load_space

ROOT = Path(__file__).resolve().parents[1]


def refusal(text: str, limits: Limits = DEFAULT_LIMITS, **params: object) -> ArchError:
    with pytest.raises(ArchError) as info:
        compile_source(text, "t.arch", options=CompileOptions(limits=limits), **params)
    return info.value


def model(body: str, shape: str = "[1, 4, 4]") -> str:
    return f"model m() {{\n  input x: {shape}\n{body}\n}}"


# (limit, source, where the error points: line, column)
CASES = [
    ("max_loop_trips", model("  for i in range(20000) { x = x -> relu }\n  output x"), (3, 18)),
    ("max_repeat", model("  output x -> relu * 20000"), (3, 22)),
    ("max_layers", model("  for i in range(6000) { x = x -> relu -> relu }\n  output x"), (3, 43)),
    ("max_steps", model("  for i in range(1000) { for j in range(1000) { let a = i } }\n  output x"), (3, 53)),
    ("max_int_bits", model("  let a = 2 ** 64\n  output x"), (3, 11)),
    ("max_int_bits", model("  let a = 18446744073709551616\n  output x"), (3, 11)),
    ("max_int_bits", model("  let a = int(1e300)\n  output x"), (3, 11)),
    ("max_depth", model("  let a = " + " + ".join(["1"] * 100) + "\n  output x"), (3, 11)),
    ("max_inputs", model("  output (" + ", ".join(["x"] * 300) + ") -> add"), (3, 914)),
]


@pytest.mark.parametrize("limit,text,where", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_each_limit_refuses_located_and_says_how_to_raise_it(limit: str, text: str, where: tuple[int, int]) -> None:
    err = refusal(text)
    assert (err.span.line, err.span.column) == where, str(err)
    assert f"(limit {limit} = " in err.message
    assert f"limits.{limit}=" in err.hint and f"Limits({limit}=" in err.hint


SUM_OF_99 = model("  let a = " + " + ".join(["1"] * 99) + "\n  output x -> relu * (a - 97)")   # 2 relus


def test_the_largest_accepted_values_compile() -> None:
    """Just under each limit is fine: 2 ** 64 - 1 (64 bits), a sum of 99 terms (100 levels), 256 merged values."""
    widest = compile_source(model("  let a = 2 ** 63 - 1 + 2 ** 63\n  output x -> relu * (a // 2 ** 62)")).graph
    assert [n.op for n in widest.nodes] == ["input"] + ["relu"] * 3   # (2 ** 64 - 1) // 2 ** 62 = 3
    assert [n.op for n in compile_source(SUM_OF_99).graph.nodes] == ["input", "relu", "relu"]
    merged = compile_source(model("  output (" + ", ".join(["x"] * 256) + ") -> add")).graph.output_node
    assert (merged.op, merged.inputs) == ("add", ("x",) * 256)


def test_raising_a_limit_lets_the_input_through() -> None:
    text = model("  output x -> relu * 5")        # 6 layers with the input
    assert "max_layers" in refusal(text, Limits(max_layers=5)).message
    result = compile_source(text, options=CompileOptions(limits=Limits(max_layers=6)))
    assert len(result.graph.nodes) == 6
    assert "max_repeat" in refusal(text, Limits(max_repeat=4)).message


def test_layers_are_counted_while_expanding_through_blocks() -> None:
    """Ten nested blocks each used ten times (10^10 layers) stop at the first layer over the limit."""
    blocks = ["block b0() { input x\n output x -> relu }"]
    blocks += [f"block b{i}() {{ input x\n output x -> b{i - 1} * 10 }}" for i in range(1, 10)]
    err = refusal("\n".join(blocks) + "\nmodel m() { input x: [1, 4, 4]\n output x -> b9 * 10 }",
                  Limits(max_layers=50))
    assert "more than 50 layers" in err.message and err.span.line == 2
    assert "inside block 'b0' used at t.arch:4:14" in err.hint


def test_source_size_is_checked_before_parsing_and_reading(tmp_path: Path) -> None:
    text = model("  output x" + " " * 2000)
    err = refusal(text, Limits(max_source_bytes=1000))
    assert err.span.line == 1 and "max_source_bytes" in err.message
    path = tmp_path / "big.arch"
    path.write_text(text)
    with pytest.raises(ArchError, match="larger than 1,000 bytes"):
        read_source(path, Limits(max_source_bytes=1000))
    if Path("/dev/zero").exists():  # an endless file is not read whole
        with pytest.raises(ArchError, match="max_source_bytes"):
            read_source("/dev/zero")


def test_decisions_of_a_space_are_limited() -> None:
    text = model("".join(f"  let a{i} = [1 | 2]\n" for i in range(12)) + "  output x")
    with pytest.raises(ArchError, match="max_decisions") as info:
        load_space(text, "s.arch", options=CompileOptions(limits=Limits(max_decisions=10)))
    assert info.value.span.line == 13
    assert len(load_space(text, "s.arch").decisions) == 12


def test_limits_are_validated_and_named_by_their_config_key() -> None:
    with pytest.raises(ArchError) as info:
        Limits(max_layers=0)
    assert str(info.value).startswith("limits.max_layers: error:")
    with pytest.raises(ArchError, match="unknown limit 'max_cats'"):
        Limits.from_mapping({"max_cats": 3})
    assert Limits.from_mapping({"max_layers": 1e4, "max_activation_mb": 10}).max_layers == 10_000
    with pytest.raises(ArchError, match="positive integer"):
        Limits.from_mapping({"max_layers": 2.5})


def test_the_config_lists_every_limit_with_its_default() -> None:
    config = OmegaConf.load(ROOT / "conf" / "config.yaml")
    assert dict(config.limits) == dataclasses.asdict(DEFAULT_LIMITS)


# ---- building: the size check comes before any weights exist ---------------------------------------------------
HUGE_CONV = model("  output x -> conv(1000000000, 3)", "[3, 8, 8]")


def test_a_huge_model_compiles_without_allocating_and_build_refuses_it() -> None:
    result = compile_source(HUGE_CONV, "huge.arch")         # no weights: this would be 104 GiB
    assert result.summary["params"] == 28_000_000_000
    with pytest.raises(ArchError) as info:
        result.build()
    assert str(info.value).startswith("huge.arch:3:15: error: the model has 28,000,000,000 parameters")
    assert "limits.max_params=28000000000" in info.value.hint


def test_activation_memory_is_checked_before_building() -> None:
    result = compile_source(model("  output x -> conv(128, 3, padding=1)", "[3, 4096, 4096]"), "act.arch")
    with pytest.raises(ArchError, match="8,192 MiB per sample") as info:
        result.build()
    assert info.value.span.line == 3
    check_build(result.graph, Limits(max_activation_mb=9000))  # raised: accepted


def test_compile_task_builds_only_for_exports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from search.tasks.compile import compile_task

    built: list[str] = []
    original = CompileResult.build
    monkeypatch.setattr(CompileResult, "build", lambda self: built.append(self.graph.name) or original(self))
    arch = tmp_path / "huge.arch"
    arch.write_text(HUGE_CONV)
    cfg = OmegaConf.create({"arch": str(arch), "out_dir": str(tmp_path / "out"), "task": {"max_rows": 5},
                            "export": [], "ops": [], "params": {}, "input_shape": None, "debug": False,
                            "limits": dataclasses.asdict(DEFAULT_LIMITS)})
    assert compile_task(cfg) == 0 and built == []
    assert (tmp_path / "out" / "model.py").exists()
    cfg.export = ["pt2"]
    cfg.out_dir = str(tmp_path / "out2")
    with pytest.raises(ArchError, match="max_params"):
        compile_task(cfg)
    assert not (tmp_path / "out2").exists()  # refused before anything was written


def test_the_expander_recurses_far_below_the_python_limit() -> None:
    """Inputs at the depth limit compile within 400 frames of the caller (the default Python limit is 1000)."""
    blocks = "\n".join(["block b0(c = " + "(" * 18 + "1" + " + 1)" * 18 + ") { input x\n output x -> relu * (c - 18) }"]
                       + [f"block b{i}() {{ input x\n output x -> b{i - 1} }}" for i in range(1, 20)])   # c = 19
    adds = [("add1", ("x", "x"))] + [(f"add{i}", (f"add{i - 1}", "x")) for i in range(2, 97)] + [("y", ("add96", "x"))]
    at_the_limit = {   # text -> (name, inputs) of each node of its graph
        SUM_OF_99: [("x", ()), ("relu1", ("x",)), ("relu2", ("relu1",))],
        model("if true {\n" * 96 + "x = x -> relu\n" + "}\n" * 96 + "  output x"): [("x", ()), ("relu1", ("x",))],
        model("  y = " + "(" * 97 + "x, x) -> add" + ", x) -> add" * 96 + "\n  output y"): [("x", ()), *adds],
        model("  output x -> conv(" + "max(1, " * 47 + "1" + ")" * 47 + ", 1)"): [("x", ()), ("conv1", ("x",))],
        blocks + "\nmodel m() { input x: [1, 4, 4]\n output x -> b19 }":   # one relu, named by the blocks around it
            [("x", ()), ("_".join(f"b{i}_1" for i in range(19, -1, -1)) + "_relu1", ("x",))],
    }
    depth = len(_stack())
    saved = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + 400)
    try:
        results = [(compile_source(text).graph, load_space(text)) for text in at_the_limit]
    finally:
        sys.setrecursionlimit(saved)
    for (graph, space), expected in zip(results, at_the_limit.values()):
        assert [(n.name, n.inputs) for n in graph.nodes] == expected and graph.output == expected[-1][0]
        assert space.decisions == () and space.compile(()).graph == graph
    conv = results[3][0].output_node
    assert (conv.attrs["channels"], conv.attrs["kernel"]) == (1, 1)   # max(1, max(1, ... 1)) = 1


def _stack() -> list[object]:
    frame, frames = sys._getframe(), []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    return frames


# ---- the limits reach every task that compiles ---------------------------------------------------------------
SMALL_NET = """model small(num_classes = 10, in_channels = 1) {
    input x: [in_channels, 8, 8]
    output x -> conv(4, 3) -> bn -> relu -> flatten -> linear(num_classes)
}
"""
TASKS = {  # the cheapest run of each task
    "compile": ["arch={arch}"],
    "train": ["task=train", "arch={arch}", "trainer.budget.steps=1", "trainer.progress=false"],
    "search": ["+search=random", "search.budget=1", "search.progress=false", "task.export_best=false",
               "evaluator=cost", "objective.objectives=[{{name:params,direction:min}}]"],
    "darts": ["+search=darts", "search.epochs=1", "search.progress=false"],
    "profile_ops": ["task=profile_ops", "device=cpu", "task.archs=[{arch}]", "task.synthetic=0", "task.report=false"],
}


@pytest.mark.parametrize("task", sorted(TASKS))
def test_a_tiny_layer_limit_from_the_config_is_refused_by_every_task(task: str, tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir

    from compiler.config_values import load_target
    arch = tmp_path / "small.arch"
    arch.write_text(SMALL_NET)
    overrides = [o.format(arch=arch) for o in TASKS[task]] + ["limits.max_layers=3", f"out_dir={tmp_path / 'out'}"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    with pytest.raises(ArchError) as info:
        load_target(cfg.task._target_, "task._target_")(cfg)
    assert "more than 3 layers" in info.value.message and "(limit max_layers = 3)" in info.value.message
    assert "limits.max_layers=" in info.value.hint
