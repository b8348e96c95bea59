"""`python -m compiler arch=F.arch`: compile one file (model.py, profile.py, arch.arch, summary.json), or check a
space and list its decisions (space.json)."""
from __future__ import annotations

import json
from typing import Optional

from omegaconf import DictConfig

from compiler.api import read_source
from compiler.config_values import ConfigError, check_value
from compiler.errors import ArchError
from compiler.ir.ops import load_op_modules
from compiler.passes.analyse import check_build
from compiler.space import Space, load_space
from search.tasks.common import compile_options, export_formats, model_params, output_dir, plain, write_exports


def check_space(cfg: DictConfig, space: Space) -> int:
    """A file with choices: check the space statically, list its decisions, write space.json."""
    space.validate()
    out = output_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    decisions = [{"name": d.name, "kind": d.kind, "options": list(d.options), "source": str(d.span)}
                 for d in space.decisions]
    (out / "space.json").write_text(json.dumps({"name": space.name, "size": space.size, "decisions": decisions},
                                               indent=2) + "\n")
    width = max(len(d.name) for d in space.decisions)
    for d in space.decisions:
        print(f"{d.name.ljust(width)}  {d.kind:<5}  {' | '.join(d.options)}")
    print(f"{space.name}: a search space of {space.size:,} architectures in {len(space.decisions)} decisions; every "
          f"option compiles (checked one decision at a time and on random combinations)")
    print(f"wrote {out / 'space.json'}; search it with `python -m compiler +search=evolution arch={cfg.arch}`")
    return 0


def compile_task(cfg: DictConfig) -> int:
    if not cfg.get("arch"):
        raise ConfigError("arch", "no .arch file given",
                          hint="run e.g. `python -m compiler arch=examples/resnet18.arch`")
    load_op_modules(plain(cfg.get("ops")) or [])
    formats = export_formats(cfg)
    options = compile_options(cfg)
    max_rows = check_value(cfg.task.get("max_rows"), Optional[int], "task.max_rows", minimum=0)
    space = load_space(read_source(cfg.arch, options.limits), str(cfg.arch), options=options, **model_params(cfg))
    if space.decisions:
        if formats:
            raise ConfigError("export", f"{cfg.arch} is a search space ({len(space.decisions)} decisions): there is "
                              "no one model to export", hint="export a searched model: its best/ folder is written "
                              "with the same export=[...] setting")
        return check_space(cfg, space)
    result = space.compile(())  # the one model of a file without choices (parsed once, above)
    if formats:  # only exports build the model: its size limits are checked before anything is written
        check_build(result.graph, result.limits)
    out = result.write(output_dir(cfg))
    for warning in result.warnings:
        print(warning)
    print(result.layer_table(max_rows))
    print(f"wrote {out / 'model.py'}, {out / 'profile.py'}, {out / 'arch.arch'}, {out / 'summary.json'}")
    try:   # compiling writes source only; say now what building it (training, profiling, exports) would refuse
        check_build(result.graph, result.limits)
    except ArchError as err:
        print(f"warning: this model is too large to build here: {err.message}" + (f"\n  hint: {err.hint}"
                                                                                   if err.hint else ""))
    if formats:
        write_exports(result, result.build(), out, formats, str(cfg.arch),  # freshly initialised weights
                      library_logs=bool(cfg.get("debug")))
    return 0
