"""Config values are checked where they enter: every mistake is `KEY: error: ...` (exit 2), never a traceback.

Configs are composed with Hydra's compose API and handed to the real task functions, which must refuse a bad value
before doing any work; a few end-to-end runs check the command line's exit status and output.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict
from torch import nn

from compiler.config_values import ConfigError, load_target
from compiler.errors import ArchError
from conftest import ROOT, run_cli
from search.data.torchvision_sets import load_torchvision
from search.darts.config import darts_config
from search.schema import check_run_config, search_config
from search.training import trainer_config
from search.training.specialise import model_parameters
from search.training.threads import MACS_PER_THREAD, auto_cpu_threads, forward_macs, resolve_cpu_threads

CONF = ROOT / "conf"
SMALL = """model small(num_classes = 10, in_channels = 1, size = 8) {
    input x: [in_channels, size, size]
    output x -> conv(4, 3) -> relu -> global_avgpool -> flatten -> linear(num_classes)
}
"""
STRATEGIES = sorted(p.stem for p in (CONF / "search").glob("*.yaml"))


def compose_config(*overrides: str, hydra: bool = False):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


@pytest.fixture
def small_arch(tmp_path: Path) -> Path:
    path = tmp_path / "small.arch"
    path.write_text(SMALL)
    return path


# Each context is a cheap run of a task (one candidate, one step), so that a value let through by mistake shows as
# a finished task instead of the expected error, quickly.
CONTEXTS = {
    "search": ["+search=random", "search.budget=1", "search.progress=false", "task.export_best=false",
               "+evaluator.search_overrides.budget.steps=1", "+evaluator.final_overrides.budget.steps=1"],
    "darts": ["+search=darts", "search.epochs=1", "search.progress=false"],
    "train": ["task=train", "trainer.budget.steps=1", "trainer.progress=false"],
    "imagefolder": ["task=train", "trainer.budget.steps=1", "dataset=imagefolder", "dataset.root=/nonexistent"],
    "compile": ["arch=examples/resnet20.arch"],
    "profile_ops": ["task=profile_ops", "device=cpu"],
    "cost": ["+search=random", "search.budget=1", "search.progress=false", "task.export_best=false", "evaluator=cost"],
}

CASES = [  # (context, override, what the message starts with)
    ("search", "search.budget=-1", "search.budget: error: must be >= 1, not -1"),
    ("search", "search.budget=abc", "search.budget: error: expected an integer, not 'abc'"),
    ("search", "search.budget=2.7", "search.budget: error: expected an integer, not 2.7"),
    ("search", "search.budget=0", "search.budget: error: must be >= 1"),
    ("search", "search.workers=0", "search.workers: error: must be >= 1, not 0"),
    ("search", "search.progress=2", "search.progress: error: expected true or false, not 2"),
    ("search", "search.strategy._target_=nonsense", "search.strategy._target_: error: cannot load 'nonsense'"),
    ("search", "seed=-5", "seed: error: must be >= 0, not -5"),
    ("search", "seed=abc", "seed: error: expected an integer"),
    ("search", "seed=4294967296", "seed: error: must be <= 4294967295"),
    ("search", "trainer.optimizer.lr=-0.1", "trainer.optimizer.lr: error: must be > 0, not -0.1"),
    ("search", "evaluator.search_overrides.batch_size=0", "evaluator.search_overrides.batch_size: error: must be"),
    ("search", "evaluator.final_overrides.cpu_threads=0", "evaluator.final_overrides.cpu_threads: error: must be"),
    ("search", "evaluator.final_overrides.budget.epochs=abc",
     "evaluator.final_overrides.budget.epochs: error: expected a number or null, not 'abc'"),
    ("search", "+evaluator.final_overrides.optimiser.lr=1",
     "evaluator.final_overrides.optimiser: error: unknown key 'optimiser'; did you mean 'optimizer'?"),
    ("search", "evaluator.early_stopping=abc", "evaluator.early_stopping: error: expected"),
    ("search", "evaluator.early_stopping={min_epoch:2}",
     "evaluator.early_stopping.min_epoch: error: unknown key 'min_epoch'; did you mean 'min_epochs'?"),
    ("search", "evaluator.early_stopping={min_epochs:0}", "evaluator.early_stopping: error: early stopping needs"),
    ("search", "evaluator.seed=-1", "evaluator.seed: error: must be >= 0"),
    ("search", "evaluator._target_=nonsense", "evaluator._target_: error: cannot load 'nonsense'"),
    ("search", "objective.constraints=[abc]", "objective: error: bad objective config: cannot read constraint"),
    ("search", "+objective.constraint=[]", "objective.constraint: error: unknown key 'constraint'; did you mean"),
    ("search", "space.arch=123", "space.arch: error: expected a string, not 123"),
    ("search", "space.params=abc", "space.params: error: expected a mapping"),
    ("search", "task.export_best=abc", "task.export_best: error: expected true or false"),
    ("search", "dataset.val_size=abc", "dataset.val_size: error: expected a number, not 'abc'"),
    ("search", "dataset.val_size=-0.1", "dataset.val_size: error: must be >= 0"),
    ("search", "dataset.val_size=2.5", "dataset.val_size: error: must be a fraction in (0, 1) or a whole number"),
    ("search", "dataset.test_size=0", "dataset.test_size: error: must be a fraction in (0, 1)"),
    ("search", "dataset.split_seed=2.7", "dataset.split_seed: error: expected an integer"),
    ("search", "dataset.val_seed=-5", "dataset.val_seed: error: must be >= 0"),
    ("search", "dataset.augment.translate=-5", "dataset.augment.translate: error: must be >= 0"),
    ("search", "dataset._target_=nonsense", "dataset._target_: error: cannot load 'nonsense'"),
    ("search", "+dataset.val_sise=3", "dataset.val_sise: error: unknown key 'val_sise'; did you mean 'val_size'?"),
    ("search", "profile=cpu profile.batch_sizes=abc", "profile.batch_sizes: error: expected"),
    ("search", "+dataset.augment.flipp=none", "dataset.augment.flipp: error: unknown key 'flipp'; did you mean"),
    ("cost", "evaluator=table space=nb201 evaluator.table=/nonexistent.csv", "evaluator.table: error: table"),
    ("cost", "profile=cpu profile.cache=-1", "profile.cache: error: expected ProfileCache or a string or a path"),
    ("cost", "profile=cpu profile.threads=2.7", "profile.threads: error: expected an integer or null, not 2.7"),
    ("cost", "profile=cpu +profile.treads=1", "profile.treads: error: unknown key 'treads'; did you mean 'threads'?"),
    ("cost", "profile=cpu profile.min_time_s=0", "profile.min_time_s: error: must be > 0, not 0"),
    ("cost", "profile=cpu profile.min_time_s=-1", "profile.min_time_s: error: must be > 0, not -1"),
    ("cost", "profile=predictor profile.table=/nonexistent.json", "profile: error: no latency table at"),
    # an objective or constraint that no part of the run reports: refused before the search, listing what is
    ("cost", "objective=accuracy", "objective: error: no part of this run reports 'accuracy' (objective); the "
     "metrics it reports are cost: params, macs, activation_mb\n"),
    ("cost", "objective=acc_latency", "objective: error: no part of this run reports 'accuracy' (objective); the "
     "metrics it reports are cost: params, macs, activation_mb; profile: latency_ms, latency_p90_ms, throughput, "
     "peak_mem_mb\n"),
    ("search", "objective.constraints=['peak_mem_mb<=10']", "objective: error: no part of this run reports "
     "'peak_mem_mb' (constraint peak_mem_mb<=10); the metrics it reports are cost: params, macs, activation_mb; "
     "evaluator: accuracy, val_acc,"),
    ("search", "objective=acc_params objective.objectives.1.name=latency_ms",
     "objective: error: no part of this run reports 'latency_ms' (objective);"),
    ("darts", "search.epochs=0", "search.epochs: error: epochs must be >= 1"),
    ("darts", "search.weights.momentum=1.5", "search.weights.momentum: error:"),
    ("darts", "search.device=tpu", "search.device: error: unknown device 'tpu'"),
    ("darts", "search.epochss=3", "search.epochss: error: unknown key 'epochss'; did you mean 'epochs'?"),
    ("darts", "search.arch.betas=[0.5]", "search.arch.betas: error:"),
    ("darts", "search.retrain.optimizer.lr=-1", "search.retrain.optimizer.lr: error: must be > 0"),
    ("train", "trainer.device=nonsense", "trainer.device: error: unknown device 'nonsense'"),
    ("train", "trainer.optimizer.momentum=-0.1", "trainer.optimizer.momentum: error: must be in [0, 1)"),
    ("train", "trainer.optimizer.weight_decay=-0.1", "trainer.optimizer.weight_decay: error: must be >= 0"),
    ("train", "trainer.optimizer.eps=0", "trainer.optimizer.eps: error: must be > 0"),
    ("train", "trainer.optimizer.betas=[]", "trainer.optimizer.betas: error: must be two numbers"),
    ("train", "trainer.schedule.warmup=inf", "trainer.schedule.warmup: error: expected a number, not inf"),
    ("train", "trainer.label_smoothing=nan", "trainer.label_smoothing: error: expected a number, not nan"),
    ("train", "trainer.label_smoothing=1.5", "trainer.label_smoothing: error: must be in [0, 1)"),
    ("train", "trainer.budget.epochs=-5 trainer.budget.steps=null", "trainer.budget.epochs: error: must be > 0"),
    ("train", "trainer.deterministic=2", "trainer.deterministic: error: expected true or false, not 2"),
    ("train", "trainer.cpu_threads=many", "trainer.cpu_threads: error: must be auto, a number of threads"),
    ("train", "trainer.compile_mode=fast", "trainer.compile_mode: error: unknown compile_mode 'fast'"),
    ("train", "trainer.grad_clip=-1", "trainer.grad_clip: error: must be > 0"),
    ("train", "trainer.whiten_stem.images=0", "trainer.whiten_stem.images: error: must be >= 1"),
    ("train", "trainer.ema.decay=2", "trainer.ema.decay: error: must be in [0, 1]"),
    ("train", "trainer.eval_every=-1", "trainer.eval_every: error: must be >= 0"),
    ("train", "task.save_weights=abc", "task.save_weights: error: expected true or false"),
    ("train", "seed=-5", "seed: error: must be >= 0, not -5"),
    ("imagefolder", "dataset.mode=CMYK", "dataset.mode: error: unknown mode 'CMYK'"),
    ("imagefolder", "dataset.image_size=[8]", "dataset.image_size: error: expected [H, W]"),
    ("imagefolder", "dataset.image_size=[100000,100000]",
     "dataset.image_size: error: expected [H, W] (two sizes from 1 to 4,096)"),
    ("imagefolder", "dataset.workers=0", "dataset.workers: error: must be >= 1"),
    ("profile_ops", "task.seed=-5", "task.seed: error: must be >= 0, not -5"),
    ("profile_ops", "task.batch_sizes=[0]", "task.batch_sizes: error: expected batch sizes >= 1"),
    ("profile_ops", "task.archs=[] task.synthetic=0", "task.archs: error: no models to measure"),
    ("profile_ops", "+task.tabel=x", "task.tabel: error: unknown key 'tabel'; did you mean 'table'?"),
    ("compile", "task.max_rows=abc", "task.max_rows: error: expected an integer or null, not 'abc'"),
    ("compile", "arch=null", "arch: error: no .arch file given"),
    ("train", "arch=null", "arch: error: no .arch file given"),
    ("train", "input_shape=[3,8,8]", "input_shape: error: input_shape cannot be set with task=train"),
    ("profile_ops", "task.archs=[nowhere/*.arch]", "task.archs: error: no .arch file matches 'nowhere/*.arch'"),
    ("search", "dataset.test_size=1795", "dataset.test_size: error: "),
]


@pytest.mark.parametrize("context,override,expected", CASES, ids=[f"{c}:{o}" for c, o, _ in CASES])
def test_a_bad_value_is_refused_naming_its_key(context: str, override: str, expected: str, small_arch: Path,
                                               tmp_path: Path, one_thread) -> None:
    arch = [f"arch={small_arch}"] if context in ("train", "imagefolder") else []
    cfg = compose_config(*CONTEXTS[context], *arch, *override.split(" "), f"out_dir={tmp_path / 'out'}")
    with pytest.raises(ArchError) as info:
        load_target(cfg.task._target_, "task._target_")(cfg)
    assert str(info.value).startswith(expected), str(info.value)
    assert not (tmp_path / "out" / "history.jsonl").exists() and not (tmp_path / "out" / "weights.pt").exists()


# ---- search keys: a typo names the closest key, for every strategy ----------------------------------------------
@pytest.mark.parametrize("name", STRATEGIES)
@pytest.mark.parametrize("plus", ["", "+"])
def test_a_misspelt_search_key_names_the_valid_ones(name: str, plus: str) -> None:
    cfg = compose_config(f"+search={name}", f"{plus}search.budgett=5")  # Hydra lets it through to the schema
    check = darts_config if name == "darts" else search_config
    with pytest.raises(ConfigError) as info:
        check(cfg.search)
    text = str(info.value)
    assert text.startswith("search.budgett: error: unknown key 'budgett'")
    if name != "darts":
        assert "did you mean 'budget'?" in text
        assert "budget, executor, include_default, name, progress, ray, strategy, warmup, workers" in text
    check(compose_config(f"+search={name}").search)  # the config as shipped passes


@pytest.mark.parametrize("key, searching", [("epochs", "evaluator.search_overrides.budget.epochs"),
                                           ("batch_size", "evaluator.search_overrides.batch_size"),
                                           ("lr", "trainer.optimizer.lr")])
def test_training_keys_under_search_point_to_where_a_sampling_search_takes_them(key: str, searching: str) -> None:
    with pytest.raises(ConfigError) as info:
        search_config(compose_config("+search=evolution", f"+search.{key}=3").search)
    assert str(info.value).startswith(f"search.{key}: error: unknown key '{key}': a search trains each candidate "
                                      "with the evaluator's trainer")
    assert info.value.hint.startswith(f"while searching: {searching}=...; for the final training of the best: ")
    # each hint is an override that works
    cfg = compose_config("+search=evolution", f"{searching}=3", info.value.hint.split("best: ")[1].replace("...", "3"))
    assert OmegaConf.select(cfg, searching) == 3
    own = key if key != "lr" else "epochs"   # DARTS trains its supernet itself: search.epochs, search.batch_size
    assert getattr(darts_config(compose_config("+search=darts", f"search.{own}=3").search), own) == 3


@pytest.mark.parametrize("name", [s for s in STRATEGIES if s != "darts"])
def test_strategy_keys_are_the_strategy_s_own_arguments(name: str) -> None:
    cfg = compose_config(f"+search={name}", "+search.strategy.populaton_size=5")
    with pytest.raises(ConfigError, match=r"^search.strategy.populaton_size: error: unknown key") as info:
        search_config(cfg.search)
    if name in ("evolution", "evolution_textbook", "nsga2"):
        assert "did you mean 'population_size'?" in str(info.value)


def test_strategy_values_are_typed_by_the_strategy_s_annotations() -> None:
    cfg = compose_config("+search=evolution", "search.strategy.population_size=abc")
    with pytest.raises(ConfigError, match=r"^search.strategy.population_size: error: expected an integer"):
        search_config(cfg.search)
    cfg = compose_config("+search=nsga2", "search.strategy.crossover=high")
    with pytest.raises(ConfigError, match=r"^search.strategy.crossover: error: expected a number"):
        search_config(cfg.search)


# ---- arch= with a search is the space file ----------------------------------------------------------------------
def test_arch_with_a_search_selects_the_space_file() -> None:
    cfg = compose_config("+search=random", "arch=examples/spaces/nb201.arch")
    assert cfg.space.arch == "examples/spaces/nb201.arch"
    check_run_config(cfg, "space")
    explicit = compose_config("+search=random", "space.arch=examples/spaces/nb201.arch")
    assert explicit.space.arch == "examples/spaces/nb201.arch"
    default = compose_config("+search=random")
    assert default.space.arch == str(ROOT / "examples" / "spaces" / "digits.arch")
    both = compose_config("+search=random", "arch=examples/spaces/nb201.arch", "space.arch=examples/spaces/x.arch")
    with pytest.raises(ConfigError, match=r"^arch: error: arch=examples/spaces/nb201.arch and space.arch="):
        check_run_config(both, "space")


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "space").glob("*.yaml")))
def test_space_configs_declare_the_file_s_parameters(name: str) -> None:
    cfg = compose_config(f"space={name}")
    declared = model_parameters(Path(cfg.space.arch).read_text(), cfg.space.arch)
    assert set(cfg.space.params) == set(declared)
    first = sorted(declared)[0]
    assert cfg.space.params[first] != 8   # the plain form works: no `+` needed
    assert compose_config(f"space={name}", f"space.params.{first}=8").space.params[first] == 8


# ---- help, messages, downloads ----------------------------------------------------------------------------------
def _help_template() -> dict:
    return yaml.safe_load((CONF / "hydra" / "help" / "automl.yaml").read_text())


def test_help_lists_every_option_of_every_group() -> None:
    template = _help_template()["template"]
    for group in ("search", "space", "evaluator", "objective", "profile", "dataset", "trainer"):
        prefix = "+search=NAME" if group == "search" else f"{group}=NAME"
        line = next(line for line in template.splitlines() if line.strip().startswith(prefix))
        listed = line.split(maxsplit=1)[1].split("(")[0].replace(",", " ").split()
        assert listed == sorted(p.stem for p in (CONF / group).glob("*.yaml")), group
    assert "search: darts" not in template and "search=evolution" not in template.replace("+search=evolution", "")


def test_help_cli_shows_the_project_s_usage() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("AutoML-CodeGen: compile .arch files")
    assert "+search=NAME       darts, evolution" in proc.stdout and "powered by Hydra" not in proc.stdout
    assert "search: darts, evolution" not in proc.stdout  # Hydra's group list, which suggests search=evolution


def test_the_workers_refusal_names_the_profile_option_the_user_typed(tmp_path: Path) -> None:
    cfg = compose_config("+search=random", "search.workers=2", "profile=cpu", "evaluator=cost",
                         f"out_dir={tmp_path}")
    with pytest.raises(ConfigError) as info:
        load_target(cfg.task._target_, "task._target_")(cfg)
    assert str(info.value).startswith("search.workers: error: search.workers=2 with profile=cpu: latency")


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "mnist", "fashion_mnist"])
def test_torchvision_sets_do_not_download_unless_allowed(name: str, tmp_path: Path) -> None:
    cfg = compose_config(f"dataset={name}", f"dataset.root={tmp_path}")
    assert cfg.dataset.download is False
    with pytest.raises(ArchError) as info:
        load_torchvision(name, root=tmp_path)
    assert "nothing is downloaded unless you allow it" in str(info.value)
    assert "dataset.download=true" in str(info.value)
    assert not any(tmp_path.iterdir())  # nothing fetched


# ---- every example command in conf/ composes and passes the checks ----------------------------------------------
def _examples() -> list[tuple[str, str]]:
    found = []
    for path in sorted(CONF.rglob("*.yaml")):
        text = re.sub(r"\\\n#?\s*", " ", path.read_text())  # a command continued on the next comment line
        for match in re.finditer(r"python -m compiler ((?:-m )?[+\w][^#\n`]*)", text):
            if "GROUP=" not in match.group(1):  # the usage line of the help text
                found.append((str(path.relative_to(ROOT)), match.group(1).strip()))
    return found


def _combinations(args: list[str]) -> list[list[str]]:
    """A multirun's overrides, one list per job (``a=1,2`` -> two jobs)."""
    jobs: list[list[str]] = [[]]
    for override in OverridesParser.create().parse_overrides(args):
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [None]
        line = override.input_line
        key = line.split("=", 1)[0]
        jobs = [job + [line if v is None else f"{key}={v}"] for job in jobs for v in values]
    return jobs


TASKS = {name: f"search.tasks.{name}.{name}_task" for name in ("compile", "profile_ops", "search", "train")}
TASK_GROUPS = {"search.tasks.search.search_task": ("search", "objective", "profile", "space", "evaluator"),
               "search.tasks.train.train_task": ("dataset", "trainer")}


@pytest.mark.parametrize("where,command", _examples(), ids=[f"{w}:{c[:40]}" for w, c in _examples()])
def test_every_example_in_conf_composes(where: str, command: str) -> None:
    args = [a for a in shlex.split(command) if a != "-m"]
    for job in _combinations(args):
        cfg = compose_config(*job, hydra=True)
        HydraConfig.instance().set_config(cfg)  # ${hydra:...} resolves as in a run
        with open_dict(cfg):
            del cfg["hydra"]
        task = next((a.split("=", 1)[1] for a in job if a.startswith("task=")),   # +search= and +experiment=:
                    "search" if any(a.startswith(("+search=", "+experiment=")) for a in job) else "compile")   # search
        assert OmegaConf.to_container(cfg, resolve=True)["task"]["_target_"] == TASKS[task]
        groups = TASK_GROUPS.get(cfg.task._target_, ())
        if groups:
            check_run_config(cfg, *groups)  # search: DARTS' node by its own schema (search/darts/config.py)
    assert len(_examples()) >= 15


# ---- trainer.cpu_threads: auto -----------------------------------------------------------------------------------
def test_auto_threads_rule() -> None:
    assert auto_cpu_threads(2_516_608, 128, cores=2) == 1          # resnet20 on the 8x8 digits
    assert auto_cpu_threads(2_516_608, 128, cores=64) == 1
    assert auto_cpu_threads(40_551_040, 128, cores=2) == 2         # resnet20 on CIFAR: 5.2 GMACs a batch
    assert auto_cpu_threads(40_551_040, 128, cores=1) == 1
    assert auto_cpu_threads(1_814_073_344, 128, cores=16) == 16    # resnet18 at 224: every core
    assert auto_cpu_threads(MACS_PER_THREAD * 3 / 64, 64, cores=8) == 3
    assert auto_cpu_threads(0, 128, cores=8) == 1


def test_auto_threads_measures_the_model_without_changing_it() -> None:
    from compiler.api import CompileOptions, compile_file

    compiled = compile_file(ROOT / "examples" / "resnet20.arch", options=CompileOptions(input_shape=(1, 8, 8)),
                            in_channels=1, size=8)
    model = compiled.build().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert forward_macs(model, (1, 8, 8)) == compiled.summary["macs"] == 2_516_608
    assert model.training and all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert resolve_cpu_threads("auto", model, (1, 8, 8), 128, cores=8) == 1
    assert resolve_cpu_threads(3, model, (1, 8, 8), 128) == 3 and resolve_cpu_threads(None, model, (1, 8, 8), 1) is None
    wide = nn.Sequential(nn.Flatten(), nn.Linear(64, 2**20))      # 2**26 MACs a sample
    assert resolve_cpu_threads("auto", wide, (1, 8, 8), 128, cores=4) == 4


def test_auto_is_the_default_of_task_train_and_the_final_training() -> None:
    cfg = compose_config("task=train")
    assert cfg.trainer.cpu_threads == "auto" and trainer_config(cfg.trainer).cpu_threads == "auto"
    searched = compose_config("+search=evolution")
    assert searched.evaluator.final_overrides.cpu_threads == "auto"
    assert searched.evaluator.search_overrides.cpu_threads == 1   # candidates: one thread, also when in parallel


# ---- the command line: exit status 2, one message, no traceback -------------------------------------------------
@pytest.mark.parametrize("args,expected", [
    (["+search=evolution", "search.budgett=5"], "search.budgett: error: unknown key 'budgett'; did you mean 'budget'?"),
    (["task=train", "arch=examples/resnet20.arch", "seed=-5"], "seed: error: must be >= 0, not -5"),
    (["task._target_=nonsense"], "task._target_: error: cannot load 'nonsense'"),
    (["arch=examples/resnet20.arch", "debug=abc"], "debug: error: expected true or false, not 'abc'"),
])
def test_cli_config_mistakes_exit_2_with_one_message(args: list[str], expected: str, tmp_path: Path) -> None:
    proc = run_cli(*args, f"out_dir={tmp_path}")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(expected) and "Traceback" not in proc.stderr + proc.stdout


def test_declared_space_parameters_reach_the_space_and_null_keeps_the_file_s_default() -> None:
    from search.evaluators.cost import CostEvaluator
    from search.tasks.search import build_space

    def params_of(*overrides: str) -> int:
        cfg = compose_config("+search=random", "space=nb201", "space.params.cells=1", *overrides)
        space = build_space(cfg, evaluator=CostEvaluator(), validate=False)  # no data to specialise the space to
        return int(space.compile([0] * len(space.decisions)).summary["params"])

    assert params_of("space.params.channels=8") < params_of() == params_of("space.params.channels=16")
