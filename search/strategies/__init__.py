"""Search strategies, all behind ``Strategy``'s ask / tell / state_dict interface (see ``base.py``).

The registry of strategies is the configs: each ``conf/search/NAME.yaml`` names its class through
``search.strategy._target_``, and the search task builds it with ``hydra.utils.instantiate`` (torch and optuna load
only when a strategy that needs them is chosen).
"""
from __future__ import annotations

from search.strategies.base import Strategy

__all__ = ["Strategy"]
