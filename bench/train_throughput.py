"""Training throughput (images/s): our trainer against a plain hand-written PyTorch loop, measured in one run.

Both train the same compiled .arch model on the same data (the JPEG CIFAR-10 by default), with the same batch size,
precision, optimizer (SGD, Nesterov) and augmentation (random crop with 4-px reflect padding + horizontal flip).
The plain loop is what one usually writes: a torch DataLoader over the uint8 images with per-image torchvision
transforms, `.to(device)` per batch, autocast when the precision asks for it. Ours keeps the data on the device and
augments whole batches there; on CUDA it also uses channels_last and (unless --no-compile) torch.compile.

Each repeat trains a fresh model for two epochs over a subset of `steps x batch` images: the first epoch is the
warm-up (compilation, cuDNN autotuning, caches), the second is timed. Prints median, min and max over the repeats.

    python bench/train_throughput.py                                   # CPU, resnet20, 20 steps x 3 repeats
    python bench/train_throughput.py --device cuda --steps 100 --batch-size 512 --repeats 5
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compiler.api import load_source  # noqa: E402
from search.data import DataSplits, load_dataset  # noqa: E402
from search.training import seed_everything, train  # noqa: E402
from search.training.precision import resolve_precision  # noqa: E402
from search.training.specialise import compile_for_data  # noqa: E402


def dataset_config(name: str, overrides: list[str]) -> Any:
    from hydra import compose, initialize_config_dir
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=[f"dataset={name}", *overrides]).dataset


def subset(data: DataSplits, count: int) -> DataSplits:
    """The first ``count`` training images of a seeded shuffle; no validation or test (nothing is evaluated)."""
    index = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))[:count]
    empty = data.train.subset([])
    return DataSplits(data.name, data.train.subset(index), empty, empty, data.classes, data.mean, data.std,
                      data.augment)


class Images(Dataset):
    def __init__(self, data: DataSplits, augment: bool) -> None:
        self.images, self.labels = data.train.images, data.train.labels
        steps = [v2.RandomCrop(data.input_shape[1], padding=4, padding_mode="reflect"), v2.RandomHorizontalFlip()]
        self.transform = v2.Compose([*(steps if augment else []), v2.ToDtype(torch.float32, scale=True),
                                     v2.Normalize(list(data.mean), list(data.std))])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.images[i]), self.labels[i]


def plain_loop(model: nn.Module, data: DataSplits, args: argparse.Namespace) -> float:
    """Images/s of the timed (second) epoch of a textbook training loop."""
    device = torch.device(args.device)
    autocast = resolve_precision(args.precision, device).autocast
    model.to(device).train()
    loader = DataLoader(Images(data, not args.no_augment), batch_size=args.batch_size, shuffle=True, drop_last=True,
                        num_workers=args.workers, pin_memory=device.type == "cuda",
                        persistent_workers=args.workers > 0)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    rate = 0.0
    for epoch in range(2):
        sync(device)
        start, seen = time.perf_counter(), 0
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
                loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(y)
        sync(device)
        rate = seen / (time.perf_counter() - start)
    return rate


def our_trainer(model: nn.Module, data: DataSplits, args: argparse.Namespace) -> float:
    """Images/s of the timed (second) epoch, from the trainer's own per-epoch record."""
    augment = {"flip": "none", "translate": 0} if args.no_augment else {"flip": "random", "translate": 4,
                                                                        "pad_mode": "reflect"}
    cuda = args.device.startswith("cuda")
    result = train(model, data, {
        "device": args.device, "batch_size": args.batch_size, "budget": {"epochs": 2}, "precision": args.precision,
        "optimizer": {"name": "sgd", "lr": args.lr, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
        "schedule": {"name": "constant"}, "augment": augment, "compile": cuda and not args.no_compile,
        "evaluate_test": False, "progress": False, "log_every": 50})
    if not result.ok:
        raise RuntimeError(result.message)
    return result.history[1]["images_per_s"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


Runner = Callable[[nn.Module, DataSplits, argparse.Namespace], float]


def measure(name: str, run: Runner, build: Callable[[], nn.Module], data: DataSplits, args: argparse.Namespace,
            repeat: int) -> float:
    seed_everything(repeat)
    rate = run(build(), data, args)
    print(f"  repeat {repeat + 1}: {name:<12} {rate:10,.1f} img/s", flush=True)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default=str(ROOT / "examples/resnet20.arch"))
    parser.add_argument("--dataset", default="cifar10_jpeg", help="a conf/dataset config name")
    parser.add_argument("--data-override", action="append", default=[], help="Hydra override, e.g. dataset.root=X")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto", help="auto: fp32 on CPU, bf16 on CUDA (both loops)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="steps per epoch (one warm-up + one timed epoch)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader worker processes of the plain loop (default: 0 on CPU, 8 on CUDA)")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--no-compile", action="store_true", help="CUDA: do not torch.compile our trainer's model")
    args = parser.parse_args()
    if args.workers is None:
        args.workers = 8 if args.device.startswith("cuda") else 0

    data = load_dataset(dataset_config(args.dataset, args.data_override))
    data = subset(data, args.steps * args.batch_size)
    compiled = compile_for_data(args.arch, data)
    build = load_source(compiled.source, "<model.py>")["build_model"]   # one class: torch.compile reuses its work
    device = torch.device(args.device)
    print(f"{Path(args.arch).name} ({compiled.summary['params']:,} params) on {data.name} {list(data.input_shape)}, "
          f"device {args.device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, "
          f"{torch.get_num_threads()} threads), precision {resolve_precision(args.precision, device).name}, "
          f"batch {args.batch_size}, {args.steps} timed steps after a warm-up epoch, {args.repeats} repeats, "
          f"plain-loop workers {args.workers}, "
          f"augment {'off' if args.no_augment else 'crop+flip'}, torch {torch.__version__}")
    rates: dict[str, list[float]] = {"plain loop": [], "our trainer": []}
    for repeat in range(args.repeats):   # interleaved, so drifting machine load hits both alike
        rates["plain loop"].append(measure("plain loop", plain_loop, build, data, args, repeat))
        rates["our trainer"].append(measure("our trainer", our_trainer, build, data, args, repeat))
    for name, values in rates.items():
        print(f"{name:<12} median {statistics.median(values):10,.1f} img/s  (min {min(values):,.1f}, "
              f"max {max(values):,.1f}, n={len(values)})")
    ratios = [o / p for o, p in zip(rates["our trainer"], rates["plain loop"])]
    print(f"ratio ours/plain: median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}; "
          f"per repeat, same machine state)")


if __name__ == "__main__":
    main()
