"""Speed of the generated PyTorch code against torchvision's hand-written models (CPU, training step).

    python bench/codegen_parity.py                       # resnet18 and mobilenet_v2, batch 16, 10 timed steps
    python bench/codegen_parity.py --models resnet18 --repeats 20 --threads 2
    python bench/codegen_parity.py --models resnet18 --model-py resnet18=build/resnet18/model.py   # a saved file

One timed step = forward + ``output.sum().backward()`` in train mode (batch norm updates its statistics, dropout
is active) on the same input tensor (batch 16, 3x224x224, fixed seed), gradients reset to None before each step.
Our model is built from the generated source exactly as users get it (``compiler.compile_file(...).build()``);
torchvision's is ``torchvision.models.NAME(weights=None)``. Before timing, torchvision's weights are copied into
ours (parameters and buffers in order; the layouts match) and the eval-mode outputs are compared, so the two
time the same computation. Steps are interleaved (ours, theirs, theirs, ours, ...) after 2 warm-up steps each,
in one process with the same thread count. Goal (issue 2): ratio ours/theirs within 0.97-1.03.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import torch
import torchvision

from _util import check_goal, interleaved, machine, ratio_spread

import compiler
from compiler.api import load_source

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("resnet18", "mobilenet_v2")


def copy_weights(src: torch.nn.Module, dst: torch.nn.Module) -> None:
    """Copy parameters and buffers in registration order; raise if the layouts differ."""
    src_state, dst_state = list(src.state_dict().values()), dst.state_dict()
    if len(src_state) != len(dst_state) or any(a.shape != b.shape for a, b in zip(src_state, dst_state.values())):
        raise ValueError("parameter layouts differ; cannot copy weights in order")
    dst.load_state_dict(dict(zip(dst_state, src_state)))


def training_step(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(x).sum().backward()
        if x.is_cuda:
            torch.cuda.synchronize()
    return step


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--repeats", type=int, default=10, help="timed steps per model and side (>= 10 for the goal)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(),
                    help="intra-op threads; on a machine shared with other jobs use 1 (spinning threads that wait "
                         "for a busy core make a step many times slower, and the ratio meaningless)")
    ap.add_argument("--device", default="cpu", help="cpu (the issue's goal) or cuda")
    ap.add_argument("--model-py", action="append", default=[], metavar="NAME=PATH",
                    help="time this generated model.py as ours for NAME instead of compiling examples/NAME.arch")
    args = ap.parse_args(argv)
    if args.repeats < 2:
        ap.error("--repeats must be at least 2 (the goal asks for 10 or more)")
    if any("=" not in item for item in args.model_py):
        ap.error("--model-py takes NAME=PATH, e.g. resnet18=build/resnet18/model.py")
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}")
    print(f"forward+backward on {args.device}, train mode, batch {args.batch}x3x{args.size}x{args.size}, "
          f"median of {args.repeats} interleaved steps after 2 warm-up steps each\n")
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size).to(args.device)
    saved = dict(item.split("=", 1) for item in args.model_py)
    ratios = {}
    for name in args.models:
        path = ROOT / "examples" / f"{name}.arch"
        if name in saved:
            ours = load_source(Path(saved[name]).read_text(), saved[name])["build_model"]()
        elif path.exists():
            ours = compiler.compile_file(path, size=args.size).build()
        else:
            print(f"{name}: skipped, {path.relative_to(ROOT)} does not exist yet\n")
            continue
        theirs = getattr(torchvision.models, name)(weights=None)
        copy_weights(theirs, ours)
        ours, theirs = ours.to(args.device), theirs.to(args.device)
        with torch.no_grad():
            diff = (ours.eval()(x[:2]) - theirs.eval()(x[:2])).abs().max().item()
        ours.train()
        theirs.train()
        stats = interleaved({"ours": training_step(ours, x), "theirs": training_step(theirs, x)},
                            args.repeats, warmup=2)
        ratios[name] = stats["ours"].median / stats["theirs"].median
        print(f"{name} ({saved.get(name, 'compiled from ' + str(path.relative_to(ROOT)))}): eval outputs after "
              f"copying weights differ by at most {diff:.2e}")
        print(f"  {'ours (generated)':<21} {stats['ours'].fmt_ms()}")
        print(f"  {'theirs (torchvision)':<21} {stats['theirs'].fmt_ms()}")
        print(f"  {check_goal('ours/theirs', ratios[name], 0.97, 1.03)} "
              f"({ratio_spread(stats['ours'], stats['theirs'])})\n")
    met = all(0.97 <= r <= 1.03 for r in ratios.values())
    print(f"goal 0.97 <= ratio <= 1.03: {'met' if met else 'NOT met'} on {len(ratios)} model(s) measured")
    return 0


if __name__ == "__main__":
    sys.exit(main())
