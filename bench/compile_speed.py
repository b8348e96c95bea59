"""Compile speed: our .arch compiler against torch.fx tracing the hand-written torchvision model.

    python bench/compile_speed.py                 # resnet18, mobilenet_v2, densenet121; 9 timed runs each
    python bench/compile_speed.py --repeats 15 --phases
    python bench/compile_speed.py --models resnet18 --profile    # cProfile of our compile, top functions

What is measured, in one process, after one untimed warm-up run of each (so Lark's parser tables, Jinja2's
template and Python's imports are built once, as in any process that compiles more than one model):
  ours  compiler.compile_source(text, filename): .arch text (already in memory) -> parse -> resolve -> expand ->
        passes (verify, dce, infer_shapes, analyse) -> summary dict -> PyTorch source -> canonical .arch text.
  fx    torch.fx.symbolic_trace(model) + GraphModule.recompile() on the torchvision model (built once, untimed,
        random weights): the Python source of the traced forward.
The two are timed alternately (ours, fx, fx, ours, ...) so that load from other processes hits both alike.
Goal (issue 2): ratio ours/fx <= 1.0 for each model.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
from pathlib import Path
from typing import Callable

import torch.fx
import torchvision

from _util import Stats, check_goal, interleaved, machine, measure, ratio_spread

import compiler
from compiler.api import CompileOptions, pipeline, to_graph
from compiler.backends.printer import print_arch
from compiler.backends.pytorch import generate_source
from compiler.backends.summary import summarize
from compiler.frontend.parser import parse
from compiler.frontend.resolve import resolve

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("resnet18", "mobilenet_v2", "densenet121")


def fx_compile(model: torch.nn.Module) -> Callable[[], str]:
    def run() -> str:
        traced = torch.fx.symbolic_trace(model)
        traced.recompile()
        return traced.code
    return run


def phase_timings(text: str, filename: str, repeats: int) -> dict[str, Stats]:
    """Each phase of compile_source timed on its own (each gets the previous phase's output, computed untimed)."""
    options = CompileOptions()
    reg = options.registry
    module_ast = parse(text, filename)
    resolved = resolve(module_ast, text, reg)
    graph = to_graph(resolved, text, None, options)
    phases: dict[str, Callable[[], object]] = {
        "parse (lark + AST)": lambda: parse(text, filename),
        "resolve": lambda: resolve(module_ast, text, reg),
        "expand (AST -> IR)": lambda: to_graph(resolved, text, None, options),
    }
    g = graph
    for p in pipeline(options).passes:
        phases[f"pass {p.name}"] = (lambda p=p, g=g: p.apply(g))
        g = p.apply(g)
    phases["summary"] = lambda: summarize(g)
    phases["codegen (pytorch)"] = lambda: generate_source(g, reg)
    phases["printer (.arch)"] = lambda: print_arch(g, reg, header="canonical form, printed by AutoML-CodeGen")
    return {name: measure(fn, repeats) for name, fn in phases.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--repeats", type=int, default=9, help="timed runs per model and side (>= 5)")
    ap.add_argument("--phases", action="store_true", help="also time each compiler phase on its own")
    ap.add_argument("--profile", action="store_true", help="print a cProfile of our compile (top 25 by cumtime)")
    args = ap.parse_args(argv)
    if args.repeats < 5:
        ap.error("--repeats must be at least 5")
    print(f"machine: {machine()}")
    print(f"median of {args.repeats} timed runs after 1 warm-up, in one process, ours and fx interleaved\n")
    ratios: dict[str, float] = {}
    for name in args.models:
        path = ROOT / "examples" / f"{name}.arch"
        if not path.exists():
            print(f"{name}: skipped, {path.relative_to(ROOT)} does not exist yet\n")
            continue
        text = path.read_text()
        filename = str(path.relative_to(ROOT))
        result = compiler.compile_source(text, filename)
        model = getattr(torchvision.models, name)(weights=None)
        stats = interleaved({"ours": lambda: compiler.compile_source(text, filename),
                             "fx": fx_compile(model)}, args.repeats)
        ours, fx = stats["ours"], stats["fx"]
        ratios[name] = ours.median / fx.median
        print(f"{name}: {len(result.graph)} IR nodes, {len(text.splitlines())} .arch lines, "
              f"{len(result.source.splitlines())} generated lines")
        print(f"  {'ours (compile_source)':<30} {ours.fmt_ms()}")
        print(f"  {'fx (symbolic_trace+recompile)':<30} {fx.fmt_ms()}")
        print(f"  {check_goal('ours/fx', ratios[name], None, 1.0)} ({ratio_spread(ours, fx)})")
        if args.phases:
            phases = phase_timings(text, filename, args.repeats)
            total = sum(s.median for s in phases.values())
            print(f"  phases (each timed alone, median of {args.repeats}; sum {total * 1e3:.2f} ms):")
            for phase, s in phases.items():
                print(f"    {phase:<22} {s.median * 1e3:7.3f} ms  {100 * s.median / total:5.1f} %")
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(args.repeats):
                compiler.compile_source(text, filename)
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
            print(out.getvalue())
        print()
    met = all(r <= 1.0 for r in ratios.values())
    skipped = sorted(set(args.models) - set(ratios))
    print(f"goal ratio <= 1.0: {'met' if met else 'NOT met'} on {len(ratios)} model(s) measured"
          + (f" (skipped: {', '.join(skipped)})" if skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
