"""The run config of the search and training tasks, checked at their entry before any work is done.

* ``search``: ``SearchConfig`` below, with ``search.warmup`` (``WarmupConfig``); ``search.strategy``'s keys are the
  strategy class's own keyword arguments (less the space, seed and objectives the loop passes), typed by its
  annotations. A one-shot strategy (DARTS) checks the whole node itself (its ``configure``: ``search/darts/config.py``).
* ``evaluator``, ``profile``, ``dataset``: the keys are the arguments of the ``_target_`` they name.
* ``trainer``: ``search/training/config.py``; ``objective``: ``ObjectiveSet``'s fields; ``space``: ``arch``,
  ``params``; ``seed``.

Every mistake is a ``ConfigError`` naming the key (``search.budgett: error: unknown key 'budgett'; did you mean
'budget'?``), exit status 2. Objects are built with ``build``, which turns a constructor's refusal into the same.
"""
from __future__ import annotations

import dataclasses
import difflib
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from compiler.config_values import (ConfigError, check_arguments, check_keys, check_seed, check_value, join,
                                    load_target)
from compiler.errors import ArchError
from search.objectives import ObjectiveSet
from search.proxies import PROXIES
from search.ray_config import RayConfig, check_ray_config
from search.strategies.one_shot import OneShotStrategy
from search.structured import plain, structured

STRATEGY_SUPPLIED = ("space", "seed", "objectives")   # what the search task passes to the strategy itself
EXECUTORS = ("local", "ray")   # search.executor: search/parallel.py's process pool, search/ray_executor.py's actors


def check_proxy_names(names: Sequence[str], key: str, extra: Sequence[str] = ()) -> list[str]:
    """``names`` as zero-cost proxies (search/proxies; or ``extra`` words such as ``ensemble``), without repeats;
    else a ConfigError at ``key`` naming the closest known one."""
    known = [*PROXIES, *extra]
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(str(name), known, n=1)
            guess = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(key, f"unknown proxy '{name}'{guess}", hint="the proxies: " + ", ".join(known))
    if len(set(names)) != len(names):
        raise ConfigError(key, f"a proxy is named twice in {list(names)}")
    return list(names)


WARMUP_ENSEMBLE = "ensemble"   # search.warmup.proxy: the shipped rank ensemble


@dataclass
class WarmupConfig:
    """``search.warmup`` (search/warmup.py): seed the strategy with the best of ``pool`` candidates by ``proxy``,
    and (``moves`` > 1) make each mutation the best of ``moves`` by ``proxy``; either works without the other."""

    proxy: str = WARMUP_ENSEMBLE   # a proxy name, or `ensemble` (the shipped rank ensemble)
    pool: int = 0                  # candidates scored before the search, not counted in the budget (0: off)
    moves: int = 1                 # mutations screened by the proxy per child (evolution, nsga2; 1: off)
    batch_size: int = 32           # images in the proxies' minibatch
    device: str = "cpu"            # where the proxies run: cpu | cuda | cuda:N | auto


def check_warmup(config: WarmupConfig) -> None:
    check_proxy_names([config.proxy], "search.warmup.proxy", extra=(WARMUP_ENSEMBLE,))
    check_value(config.pool, int, "search.warmup.pool", minimum=0,
                hint="the number of candidates scored by the proxy before the search; 0 turns the warm start off")
    check_value(config.moves, int, "search.warmup.moves", minimum=1,
                hint="the number of mutations of a parent the proxy chooses the child from; 1 turns it off")
    check_value(config.batch_size, int, "search.warmup.batch_size", minimum=2,
                hint="naswot, jacob_cov and zico compare the images of one minibatch")


@dataclass
class SearchConfig:
    name: str = "search"          # shown in the report and the progress line
    budget: int = 20              # distinct architectures evaluated
    workers: int = 1              # candidates evaluated at once, each in its own process
    executor: str = "local"       # where they run: local (a process pool on this machine) | ray (Ray actors)
    ray: RayConfig = field(default_factory=RayConfig)   # executor=ray: cluster address and each worker's resources
    progress: bool = True         # the progress bar
    warmup: WarmupConfig = field(default_factory=WarmupConfig)   # proxy-ranked candidates seed the strategy
    include_default: bool = False  # the space's default genotype (each decision's first option) is proposed first
    strategy: dict[str, Any] = field(default_factory=dict)   # _target_ and the strategy's own options


def _error(prefix: str, hint: str) -> Callable[[str, str, str | None], ConfigError]:
    return lambda key, message, given: ConfigError(join(prefix, key), message, hint=given or hint)


def check_target(node: Any, key: str, *, supplied: tuple[str, ...] = (),
                 keywords: type | None = None) -> Callable[..., Any]:
    """A ``{_target_: ..., options}`` node: the target loads and the options are its keyword arguments
    (``keywords``: the dataclass a ``**kwargs`` of the target takes)."""
    values = plain(node)
    if not isinstance(values, Mapping):
        raise ConfigError(key, f"expected a mapping with a _target_, not {values!r}")
    target = load_target(values.get("_target_"), join(key, "_target_"))
    check_value(values.get("_recursive_", True), bool, join(key, "_recursive_"))
    check_arguments(target, {k: v for k, v in values.items() if not str(k).startswith("_")}, key, supplied=supplied,
                    keywords=keywords)
    return target


def one_shot_strategy(node: DictConfig | Mapping[str, Any] | None) -> type[OneShotStrategy] | None:
    """The one-shot strategy class ``search.strategy._target_`` names (DARTS), or None: a sampling strategy."""
    values = plain(node)
    strategy = values.get("strategy") if isinstance(values, Mapping) else None
    if not isinstance(strategy, Mapping) or "_target_" not in strategy:
        return None
    target = load_target(strategy["_target_"], "search.strategy._target_")
    return target if isinstance(target, type) and issubclass(target, OneShotStrategy) else None


def check_search(node: DictConfig | Mapping[str, Any] | None) -> Any:
    """The ``search`` node, checked: by its one-shot strategy's own schema (``configure``), else as a sampling
    search's (``search_config``)."""
    one_shot = one_shot_strategy(node)
    return one_shot.configure(node) if one_shot is not None else search_config(node)


# keys people look for under `search` that a sampling search takes elsewhere (DARTS has its own epochs and lr)
# (overrides that set it while searching, and for the final training of the best)
ELSEWHERE = {
    "epochs": ("evaluator.search_overrides.budget.epochs", "evaluator.final_overrides.budget.epochs"),
    "batch_size": ("evaluator.search_overrides.batch_size", "evaluator.final_overrides.batch_size"),
    "lr": ("trainer.optimizer.lr", "+evaluator.final_overrides.optimizer.lr"),
}


def search_config(node: DictConfig | Mapping[str, Any] | None) -> SearchConfig:
    """The ``search`` node of a sampling search (every strategy but a one-shot one), checked."""
    for key, (searching, final) in ELSEWHERE.items():
        if isinstance(node, Mapping) and key in node:
            raise ConfigError(f"search.{key}", f"unknown key '{key}': a search trains each candidate with the "
                              "evaluator's trainer, whose settings are under evaluator",
                              hint=f"while searching: {searching}=...; for the final training of the best: "
                                   f"{final}=...")
    cfg = structured(SearchConfig, node, error=_error("search", "see conf/search/ for every strategy's keys"),
                     label="search")
    check_value(cfg.budget, int, "search.budget", minimum=1, hint="the number of distinct architectures to evaluate")
    check_value(cfg.workers, int, "search.workers", minimum=1, hint="1 evaluates one candidate at a time")
    if cfg.executor not in EXECUTORS:
        raise ConfigError("search.executor", f"unknown executor {cfg.executor!r}", hint=" or ".join(EXECUTORS))
    if cfg.executor == "ray":
        check_ray_config(cfg.ray)
    check_warmup(cfg.warmup)
    if "_target_" not in cfg.strategy:
        raise ConfigError("search.strategy._target_", "no strategy given", hint="pick one with +search=NAME")
    check_target(cfg.strategy, "search.strategy", supplied=STRATEGY_SUPPLIED)
    return cfg


def objective_set(node: Any) -> ObjectiveSet:
    """The ``objective`` node: only ``ObjectiveSet``'s fields, each readable (``params<=1e6``,
    ``{name, direction}``)."""
    values = plain(node)
    if isinstance(values, Mapping) and "objectives" in values:  # (a bare {name, direction} is one objective)
        check_keys("objective", values, [f.name for f in dataclasses.fields(ObjectiveSet)])
    return ObjectiveSet.coerce(values)  # a value it cannot read is an ArchError located at `objective`


def check_space(node: Any) -> None:
    values = plain(node)
    if not isinstance(values, Mapping):
        raise ConfigError("space", f"expected a mapping (arch, params), not {values!r}",
                          hint="pick one with space=NAME")
    check_keys("space", values, ("arch", "params"))
    check_value(values.get("arch"), str, "space.arch", hint="the search space's .arch file")
    check_value(values.get("params") or {}, Mapping[str, Any], "space.params",
                hint="model parameter overrides, e.g. space.params.channels=8")


def check_space_file(cfg: DictConfig) -> None:
    """``arch=FILE`` with a search names the space file (conf/space/*.yaml read it through ``${arch_or:...}``);
    given together with a different ``space.arch``, one of them would be ignored: refuse."""
    arch, space_arch = cfg.get("arch"), cfg.space.get("arch")
    if arch is not None and space_arch != arch:
        raise ConfigError("arch", f"arch={arch} and space.arch={space_arch} both name the space to search",
                          hint="give one: arch=FILE (or space.arch=FILE) picks the .arch file of the space")


def check_profile(node: Any) -> None:
    """``profile``: none, or a measurement whose extra keys are measurement Settings (search/profiling)."""
    from compiler.backends.runtime.measure import Settings

    values = plain(node) or {}
    if values.get("_target_"):
        check_target(values, "profile", keywords=Settings)
        if values.get("min_time_s", Settings.min_time_s) <= 0:  # as task=profile_ops refuses its op_min_time_s
            raise ConfigError("profile.min_time_s", f"must be > 0, not {values['min_time_s']!r}",
                              hint="the seconds each candidate's latency is timed for, e.g. 0.2")
    else:
        check_keys("profile", values, ())


def check_run_config(cfg: DictConfig, *groups: str) -> None:
    """``seed`` and the named groups (search, evaluator, objective, profile, space, dataset, trainer)."""
    from search.data import check_dataset_config
    from search.training import trainer_config

    check_seed(cfg.get("seed"), "seed")
    checks: dict[str, Callable[[Any], Any]] = {
        "search": check_search, "objective": objective_set, "profile": check_profile, "space": check_space,
        "evaluator": lambda node: check_target(node, "evaluator"), "dataset": check_dataset_config,
        "trainer": trainer_config,
    }
    for group in groups:
        checks[group](cfg.get(group))
    if "space" in groups:
        check_space_file(cfg)


@contextmanager
def refusals_named(key: str) -> Iterator[None]:
    """Build an object from the config at ``key``: a constructor's refusal of its arguments (a ValueError, or an
    OSError for a file it names) becomes a ConfigError naming the key, and Hydra's wrapping of it (or of a located
    error) is taken off."""
    try:
        yield
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, ArchError):
            raise cause from None
        if isinstance(cause, (ValueError, OSError)):
            raise ConfigError(key, str(cause).splitlines()[0]) from err
        raise
    except (ValueError, OSError) as err:
        raise ConfigError(key, str(err).splitlines()[0]) from err


def build(node: Any, key: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate(node)`` with its refusals named (``refusals_named``)."""
    with refusals_named(key):
        return instantiate(node, _convert_="all", **kwargs)
