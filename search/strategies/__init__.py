"""Search strategies, all behind ``Strategy``'s ask / tell / state_dict interface (see ``base.py``).

``STRATEGIES`` names each class by a dotted path, imported on first use (torch and optuna load only when needed).
Hydra configs (``conf/search/*.yaml``) reach the same classes through ``_target_``.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

from search.strategies.base import Strategy

STRATEGIES: dict[str, str] = {
    "random": "search.strategies.random_search.RandomSearch",
    "evolution": "search.strategies.evolution.RegularizedEvolution",
    "rl": "search.strategies.rl.Reinforce",
    "nsga2": "search.strategies.nsga2.NSGA2",
    "local": "search.strategies.local.GuidedLocalSearch",
    "hill_climb": "search.strategies.local.LocalSearch",
    "optuna_tpe": "search.strategies.optuna_tpe.OptunaTPE",
}


def strategy_class(name: str) -> type[Strategy]:
    if name not in STRATEGIES:
        raise KeyError(f"unknown strategy {name!r}; choose one of {', '.join(sorted(STRATEGIES))}")
    module, _, cls = STRATEGIES[name].rpartition(".")
    return getattr(import_module(module), cls)


def build_strategy(name: str, space: Any, seed: int = 0, objectives: Any = None, **params: Any) -> Strategy:
    return strategy_class(name)(space, seed=seed, objectives=objectives, **params)


__all__ = ["STRATEGIES", "Strategy", "build_strategy", "strategy_class"]
