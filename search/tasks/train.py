"""`python -m compiler task=train arch=F.arch dataset=NAME out_dir=D`: compile the model for the data set, train it,
and write model.py, weights.pt (loadable into model.py's build_model()), metrics.json and train_log.jsonl."""
from __future__ import annotations

import json
import logging
import platform
import sys
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from compiler.config_values import ConfigError, check_value
from compiler.ir.ops import load_op_modules
from search.tasks.common import compile_options, export_formats, model_params, output_dir, write_exports
from search.data import load_dataset
from search.schema import check_run_config
from search.training import OK, distributed, processes, seed_everything, train, trainer_config
from search.training.specialise import compile_for_data

log = logging.getLogger(__name__)

EXIT_STATUS = {OK: 0, "diverged": 3, "oom": 4}   # 2 is taken by user mistakes (ArchError)


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else str(value)


def build_seeded(compiled: Any, seed: int) -> torch.nn.Module:
    seed_everything(seed)  # the initial weights are part of a seeded run
    return compiled.build()


def train_task(cfg: DictConfig) -> int:
    if not cfg.get("arch"):
        raise ConfigError("arch", "no .arch file given", hint="run e.g. `python -m compiler task=train "
                        "arch=examples/resnet20.arch dataset=digits out_dir=build/r20`")
    if cfg.get("input_shape") is not None:
        raise ConfigError("input_shape", "input_shape cannot be set with task=train: the data set decides it",
                        hint="drop input_shape=...; pick the data with dataset=NAME")
    check_run_config(cfg, "dataset", "trainer")
    check_value(cfg.task.get("save_weights", True), bool, "task.save_weights")
    load_op_modules(cfg.get("ops") or [])
    formats = export_formats(cfg)
    trainer = trainer_config(cfg.trainer)
    # under torchrun with trainer.distributed=ddp this is one of several copies: rank 0 writes, the others train only
    rank = distributed.launch_rank() if trainer.distributed == "ddp" else distributed.SINGLE
    if not rank.writer:
        logging.getLogger().setLevel(logging.WARNING)
    data = load_dataset(cfg.dataset)
    log.info("%s", data.describe())
    compiled = compile_for_data(cfg.arch, data, model_params(cfg), compile_options(cfg))
    if not rank.writer:
        result = train(build_seeded(compiled, trainer.seed), data, trainer)
        return EXIT_STATUS.get(result.status, 1)
    out = compiled.write(output_dir(cfg))
    log_path = out / "train_log.jsonl"
    log_path.write_text("")

    def on_epoch(record: dict[str, Any]) -> None:
        with log_path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    if trainer.distributed == "ddp" and not distributed.launched():  # the trainer starts trainer.processes itself
        result = processes.train_in_processes(processes.ModelSource.of(compiled), data, trainer, trainer.seed,
                                                on_epoch=on_epoch)
    else:
        result = train(build_seeded(compiled, trainer.seed), data, trainer, on_epoch=on_epoch)
    metrics = {
        **{k: _jsonable(v) for k, v in result.metrics.items()},
        "arch": str(cfg.arch), "model": compiled.graph.name, "params": int(compiled.summary["params"]),
        "macs": int(compiled.summary["macs"]), "dataset": data.name, "input_shape": list(data.input_shape),
        "num_classes": data.num_classes, "classes": list(data.classes),
        "splits": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
        # model.py expects inputs normalised like this: (pixels / 255 - mean) / std, per channel
        "normalization": {"mean": list(data.mean), "std": list(data.std)},
        "seed": trainer.seed, "torch": torch.__version__, "python": platform.python_version(),
        "config": OmegaConf.to_container(cfg.trainer, resolve=True),
    }
    if result.ok and cfg.task.get("save_weights", True) and result.model is not None:
        state = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype)
                 for k, v in result.model.state_dict().items()}
        torch.save(state, out / "weights.pt")
        metrics["weights"] = "weights.pt"
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if result.ok and result.model is not None and formats:
        trained = compiled.build()
        trained.load_state_dict({k: v.detach().cpu() for k, v in result.model.state_dict().items()})
        write_exports(compiled, trained, out, formats, str(cfg.arch))
    line = f"{result.status}: {result.message}"
    print(line if result.ok else f"training failed: {line}", file=sys.stdout if result.ok else sys.stderr)
    print(f"wrote {out / 'model.py'}, {out / 'metrics.json'}" + (f", {out / 'weights.pt'}" if "weights" in metrics
                                                                   else ""))
    return EXIT_STATUS.get(result.status, 1)
