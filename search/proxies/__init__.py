"""Zero-cost proxies: scores of an untrained network from one minibatch that rank architectures by how well they
will train, validated against NAS-Bench-201 by ``bench/zero_cost_nb201.py``.

One module per proxy or family (each documents its paper and the exact definition used), a registry that scores a
network with several of them (``measure_proxies``), and a rank ensemble (``RankEnsemble``; ``DEFAULT_ENSEMBLE`` is
the shipped one). Every proxy is a pure function: it works on a copy of the network, leaves the caller's model and
RNG state as they were, is deterministic for a seed, runs on the inputs' device, and scores a network it cannot
measure (output independent of the input) as -inf.
"""
from search.proxies.base import WORST
from search.proxies.cost import macs, params
from search.proxies.ensemble import RankEnsemble
from search.proxies.gradients import grad_norm, loss_gradient_scores, snip, zico
from search.proxies.jacob_cov import jacob_cov
from search.proxies.naswot import naswot
from search.proxies.ranking import average_ranks, kendall, mid_rank_position, spearman
from search.proxies.registry import PROXIES, ProxyResult, check_names, measure_proxies, score_proxies
from search.proxies.synflow import synflow

__all__ = ["PROXIES", "WORST", "ProxyResult", "RankEnsemble", "average_ranks", "check_names", "grad_norm",
           "jacob_cov", "kendall", "loss_gradient_scores", "macs", "measure_proxies", "mid_rank_position",
           "naswot", "params", "score_proxies", "snip", "spearman", "synflow", "zico"]
