"""Is the DARTS memory check right? The supernet's training-memory estimate (search/darts/memory.py) against the
memory one training step really takes, measured, for the two DARTS spaces at search-paper and small sizes.

    python bench/darts_memory.py --device cuda        # exact: torch.cuda.max_memory_allocated
    python bench/darts_memory.py --device cpu         # RSS growth (allocator and oneDNN scratch included)

Measured: from an empty device, build the supernet, its SGD (momentum) and Adam optimizers, and run two first-order
steps (forward, backward, SGD step on the weights, Adam step on the logits) at the batch size; the peak of
allocated memory (CUDA) or resident-set growth (CPU). The estimate counts weights, gradients and momentum (3 copies)
plus every fresh activation kept for backward, at fp32.
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler.api import CompileOptions  # noqa: E402
from compiler.supernet import build_supernet  # noqa: E402
from compiler.backends.runtime.measure import MemoryMeter, synchronize  # noqa: E402
from compiler.space import load_space_file  # noqa: E402
from search.darts.memory import MIB, estimate  # noqa: E402

CASES = {  # name -> (space file, parameters, input shape)
    "nb201_small": ("nb201.arch", {"channels": 8, "cells": 1}, (1, 8, 8)),
    "nb201": ("nb201.arch", {"channels": 16, "cells": 5}, (3, 32, 32)),
    "darts_small": ("darts.arch", {"channels": 4, "layers": 3}, (1, 8, 8)),
    "darts": ("darts.arch", {"channels": 16, "layers": 8}, (3, 32, 32)),
}


def measure_mb(supernet: Any, shape: tuple[int, ...], batch: int, device: torch.device) -> float:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    with MemoryMeter(device) as meter:
        model = supernet.build().to(device)
        w_opt = torch.optim.SGD(model.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
        a_opt = torch.optim.Adam(model.arch_parameters(), lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
        x = torch.randn(batch, *shape, device=device)
        y = torch.randint(0, 10, (batch,), device=device)
        for _ in range(2):
            w_opt.zero_grad(set_to_none=True)
            a_opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            w_opt.step()
            a_opt.step()
        synchronize(device)
    del model, w_opt, a_opt, x, y
    return meter.peak_bytes / MIB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--batch-sizes", default="32,64")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    rows: list[dict[str, Any]] = []
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"DARTS supernet training memory on {name}, torch {torch.__version__}; estimate vs measured")
    print(f"{'space':<12} {'batch':>5} {'params':>9} {'weights MiB':>11} {'act. MiB':>9} {'estimate':>9} "
          f"{'measured':>9} {'est/meas':>8}")
    warmed = False
    for case in args.cases.split(","):
        file, params, shape = CASES[case]
        space = load_space_file(str(ROOT / "examples" / "spaces" / file),
                                options=CompileOptions(input_shape=shape), num_classes=10,
                                in_channels=shape[0], size=shape[1], **params)
        supernet = build_supernet(space, unrelaxed="first")
        if not warmed:  # one untimed step first: library start-up (cuDNN, oneDNN) is not the supernet's memory
            measure_mb(supernet, shape, 2, device)
            warmed = True
        for batch in [int(b) for b in args.batch_sizes.split(",")]:
            est = estimate(supernet, batch)
            measured = measure_mb(supernet, shape, batch, device)
            row = {"space": case, "batch": batch, "params": est.params, "weights_mb": est.weights_mb,
                   "activations_mb": est.activations_mb, "estimate_mb": est.total_mb, "measured_mb": measured,
                   "ratio": est.total_mb / measured if measured else None}
            rows.append(row)
            print(f"{case:<12} {batch:>5} {est.params:>9,} {est.weights_mb:>11.1f} {est.activations_mb:>9.1f} "
                  f"{est.total_mb:>9.1f} {measured:>9.1f} {row['ratio'] or float('nan'):>8.2f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": name, "torch": torch.__version__, "rows": rows},
                                              indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
