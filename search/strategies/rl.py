"""REINFORCE with an LSTM controller (Zoph & Le 2017; the ENAS-style controller of Pham et al. 2018).

The controller samples a genotype decision by decision: at step i the LSTM reads the embedding of the previous
choice and a linear head gives the logits of decision i. Each result updates it with the policy gradient
``-(reward - baseline) * log p(genotype) - entropy_weight * H``, where the baseline is a moving average of the
rewards. The reward is the result's rank among all results so far (in [0, 1]; failed candidates rank last): the
share of the other results it beats, ties counting half (``ObjectiveSet.share_beaten``; with several ranked
objectives "beats" means Pareto-dominates), so one learning rate fits any metric scale and outliers do not blow up
the gradient. Sampling skips subtrees of
decisions whose genotypes have all been evaluated, so the controller never proposes a known architecture.

Warm start (``seed_with``): the controller is first trained on a proxy's ranking of a pool of candidates, as if
their ranks were rewards, so its first proposals already lean towards what the proxy ranks high.

Sampling uses the strategy's numpy Generator; torch is only used for the network, whose weights and optimizer
state go into ``state_dict`` (as JSON lists: float32 values survive a float64 round trip exactly).
"""
from __future__ import annotations

import math
from bisect import insort
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from search.objectives import Fitness
from compiler.ir.space import Genotype
from search.strategies.base import Strategy


class Controller(nn.Module):
    def __init__(self, cards: Sequence[int], hidden: int = 64) -> None:
        super().__init__()
        self.start = nn.Parameter(torch.zeros(1, hidden))
        self.embeddings = nn.ModuleList(nn.Embedding(n, hidden) for n in cards)
        self.cell = nn.LSTMCell(hidden, hidden)
        self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in cards)

    def steps(self, choose: Any) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        """Run the decisions in order; ``choose(i, probs, choices_so_far) -> option`` picks each one (sampling
        or teacher forcing). Returns the choices, the summed log-probability and the summed entropy."""
        x, state = self.start, None
        choices, log_p, entropy = [], torch.zeros(()), torch.zeros(())
        for i, head in enumerate(self.heads):
            state = self.cell(x, state)
            log_probs = torch.log_softmax(head(state[0])[0], dim=-1)
            choice = int(choose(i, log_probs.detach().exp().numpy(), choices))
            choices.append(choice)
            log_p = log_p + log_probs[choice]
            entropy = entropy - (log_probs.exp() * log_probs).sum()
            x = self.embeddings[i](torch.tensor([choice]))
        return choices, log_p, entropy


# the dtypes of the controller's and its optimizer's state, by the name _tensors_to_json writes (read back as data:
# a name from a run directory is never looked up on the torch module)
STATE_DTYPES = {str(dtype).removeprefix("torch."): dtype for dtype in (torch.float32, torch.float64, torch.int64)}


def _tensors_to_json(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return {"tensor": value.tolist(), "dtype": str(value.dtype).removeprefix("torch.")}
    if isinstance(value, dict):
        return {str(k): _tensors_to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_tensors_to_json(v) for v in value]
    return value


def _json_to_tensors(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"tensor", "dtype"}:
            if value["dtype"] not in STATE_DTYPES:
                raise ValueError(f"unknown tensor dtype {value['dtype']!r} in the controller state")
            return torch.tensor(value["tensor"], dtype=STATE_DTYPES[value["dtype"]])
        return {k: _json_to_tensors(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_to_tensors(v) for v in value]
    return value


class Reinforce(Strategy):
    draws = False   # every proposal is sampled from the controller: none to start from (``start_with``)

    def __init__(self, space: Any, seed: int = 0, objectives: Any = None, hidden: int = 64,
                 learning_rate: float = 0.03, baseline_decay: float = 0.9, entropy_weight: float = 0.03) -> None:
        super().__init__(space, seed, objectives)
        self.cards = space.cardinalities
        if not 0 <= baseline_decay < 1:
            raise ValueError(f"baseline_decay must be in [0, 1), not {baseline_decay}")
        self.baseline_decay = baseline_decay
        self.entropy_weight = entropy_weight
        with torch.random.fork_rng(devices=[]):  # seeded initial weights without touching the global RNG
            torch.manual_seed(seed)
            self.controller = Controller(space.cardinalities, hidden)
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=learning_rate)
        self.baseline: float | None = None
        self.seen: list[Fitness] = []  # sorted fitnesses of the distinct genotypes told (for rank rewards)
        self.told: set[Genotype] = set()
        self.prefix_counts: dict[Genotype, int] = {}  # told genotypes per prefix, to skip exhausted subtrees

    def _propose(self) -> Genotype:
        with torch.no_grad():
            choices, _, _ = self.controller.steps(self._sample)
        return tuple(choices)

    def _sample(self, i: int, probs: np.ndarray, prefix: Sequence[int]) -> int:
        """Draw decision i from the controller's probabilities, leaving out options under which every genotype
        has been evaluated already: the policy conditioned on "not yet evaluated" (sampling without replacement;
        a known result would teach nothing new, and the budget wrapper would only hand it back)."""
        remaining = math.prod(self.cards[i + 1:])
        full = [self.prefix_counts.get((*prefix, v), 0) >= remaining for v in range(len(probs))]
        if not all(full):
            probs = np.where(full, 0.0, probs)
            if probs.sum() <= 0:  # the policy put (numerically) all its mass on exhausted options
                probs = np.where(full, 0.0, 1.0)
        cumulative = np.cumsum(probs)
        return min(int(np.searchsorted(cumulative, self.rng.random() * cumulative[-1], side="right")),
                   len(probs) - 1)

    def _count(self, genotype: Genotype) -> None:
        for depth in range(1, len(genotype) + 1):
            key = genotype[:depth]
            self.prefix_counts[key] = self.prefix_counts.get(key, 0) + 1

    def _reward(self, genotype: Genotype, fitness: Fitness) -> float:
        """Mid-rank of ``fitness`` among the results of distinct genotypes (including itself), in [0, 1]."""
        if genotype not in self.told:  # a cached result told again must not count twice
            self.told.add(genotype)
            self._count(genotype)
            insort(self.seen, fitness)
        return self.objectives.share_beaten(fitness, self.seen)

    def _observe(self, genotype: Genotype, fitness: Fitness, metrics: Mapping[str, Any]) -> None:
        reward = self._reward(genotype, fitness)
        if self.baseline is None:
            self.baseline = reward
        _, log_p, entropy = self.controller.steps(lambda i, *_: genotype[i])
        loss = -(reward - self.baseline) * log_p - self.entropy_weight * entropy
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * reward

    def seed_with(self, ranked: Sequence[Sequence[int]]) -> None:
        """Warm start: the controller first learns the proxy's ranking of the pool, one policy-gradient step per
        member with its rank in the pool as the reward (best 1, worst 0) against their mean (1/2), taken from both
        ends of the ranking in turn (best, worst, second best, ...) so that neither end comes last; the baseline
        starts at that mean. The pool is not a result: it adds nothing to the rewards' ranking."""
        genotypes = [self.space.check_genotype(g) for g in ranked]
        n = len(genotypes)
        if n < 2:
            return
        turns = [i for pair in zip(range(n), reversed(range(n))) for i in pair][:n]   # 0, n-1, 1, n-2, ...
        for i in turns:
            reward = 1 - i / (n - 1)
            _, log_p, entropy = self.controller.steps(lambda step, *_: genotypes[i][step])
            loss = -(reward - 0.5) * log_p - self.entropy_weight * entropy
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        self.baseline = 0.5

    def _state(self) -> dict[str, Any]:
        return {"controller": _tensors_to_json(self.controller.state_dict()),
                "optimizer": _tensors_to_json(self.optimizer.state_dict()),
                "baseline": self.baseline, "seen": [f.to_json() for f in self.seen],
                "told": [list(g) for g in sorted(self.told)]}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        self.controller.load_state_dict(_json_to_tensors(state["controller"]))
        optimizer = _json_to_tensors(state["optimizer"])
        optimizer["state"] = {int(k): v for k, v in optimizer["state"].items()}
        self.optimizer.load_state_dict(optimizer)
        self.baseline = state["baseline"]
        self.seen = [Fitness.from_json(f) for f in state["seen"]]
        self.told = {tuple(int(v) for v in g) for g in state["told"]}
        self.prefix_counts = {}
        for genotype in sorted(self.told):
            self._count(genotype)
