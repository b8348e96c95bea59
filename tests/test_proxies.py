"""Zero-cost proxies (search/proxies): each on networks small enough to compute by hand, the caller's model left
as it was, determinism, degenerate networks, ranks and rank correlations, the rank ensemble, the bench's helpers."""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compiler import compile_source
from compiler.space import load_space_file
from search import nb201
from search.proxies import (PROXIES, WORST, RankEnsemble, average_ranks, grad_norm, jacob_cov, kendall,
                            loss_gradient_scores, measure_proxies, mid_rank_position, naswot, score_proxies, snip,
                            spearman, synflow, zico)
from search.proxies.ensemble import DEFAULT_ENSEMBLE
from search.proxies.jacob_cov import K, jacobian_and_codes_scores, jacobian_score
from search.proxies.registry import plan

ROOT = Path(__file__).resolve().parents[1]
MODEL_PROXIES = [n for n, p in PROXIES.items() if "model" in p.needs]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def chain(*layers: nn.Module) -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(*layers)
    for m in net.modules():   # signed weights, so that taking |w| matters
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight)
    return net


SMALL_CNN = """
model small(width = 8) {
    input x: [3, 8, 8]
    x = x -> conv(width, 3) -> bn -> relu -> dropout(0.2)
    x = x -> conv(width, 3, stride=2) -> bn -> relu
    output x -> global_avgpool -> flatten -> linear(4)
}
"""


def small_cnn(width: int = 8):
    compiled = compile_source(SMALL_CNN, width=width)
    torch.manual_seed(1)
    return compiled, compiled.build()


def batch(n: int = 8, shape=(3, 8, 8), classes: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, *shape), generator=g), torch.randint(0, classes, (n,), generator=g)


def snapshot(model: nn.Module) -> dict:
    return {"state": {k: v.clone() for k, v in model.state_dict().items()}, "training": model.training,
            "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
            "dtypes": [p.dtype for p in model.parameters()],
            "modules": [type(m).__name__ for m in model.modules()]}


def assert_same(before: dict, after: dict) -> None:
    assert before["training"] == after["training"] and before["dtypes"] == after["dtypes"]
    assert before["modules"] == after["modules"]
    assert before["state"].keys() == after["state"].keys()
    for k in before["state"]:
        assert torch.equal(before["state"][k], after["state"][k]), k
    for a, b in zip(before["grads"], after["grads"]):
        assert (a is None and b is None) or torch.equal(a, b)


# ---- synflow ----------------------------------------------------------------------------------------------------
def test_synflow_of_a_linear_chain_is_the_closed_form() -> None:
    # y = W3 W2 W1 x without biases: R = 1^T |W3||W2||W1| 1, and each layer's sum of |w * dR/dw| equals R
    # (synaptic flow is conserved layer by layer), so the score is 3 R.
    net = chain(nn.Linear(5, 4, bias=False), nn.Linear(4, 3, bias=False), nn.Linear(3, 2, bias=False))
    a1, a2, a3 = (m.weight.detach().double().abs() for m in net)
    r = float(torch.ones(2, dtype=torch.float64) @ a3 @ a2 @ a1 @ torch.ones(5, dtype=torch.float64))
    # per layer by hand: dR/dA1 = (1^T A3 A2)^T 1^T, dR/dA2 = (1^T A3)^T (A1 1)^T, dR/dA3 = 1 (A2 A1 1)^T
    ones = lambda n: torch.ones(n, dtype=torch.float64)  # noqa: E731
    by_layer = [(a1 * torch.outer(ones(2) @ a3 @ a2, ones(5))).sum(),
                (a2 * torch.outer(ones(2) @ a3, a1 @ ones(5))).sum(),
                (a3 * torch.outer(ones(2), a2 @ a1 @ ones(5))).sum()]
    assert [float(v) for v in by_layer] == pytest.approx([r, r, r], rel=1e-12)
    assert synflow(net, torch.randn(7, 5)) == pytest.approx(3 * r, rel=1e-12)


def test_synflow_ignores_the_data_and_disables_batchnorm() -> None:
    plain = chain(nn.Linear(5, 4, bias=False), nn.Linear(4, 3, bias=False))
    with_bn = nn.Sequential(plain[0], nn.BatchNorm1d(4), plain[1])
    with_bn[1].weight.data.fill_(3.0)   # would change the score if batch norm were applied
    score = synflow(plain, torch.randn(7, 5))
    assert synflow(plain, torch.zeros(2, 5)) == score
    assert synflow(with_bn, torch.randn(7, 5)) == pytest.approx(score, rel=1e-12)


def test_synflow_leaves_the_model_exactly_as_it_was() -> None:
    compiled, model = small_cnn()
    model.eval()
    x, y = batch()
    F.cross_entropy(model(x), y).backward()   # the caller's own gradients must survive too
    before = snapshot(model)
    assert math.isfinite(synflow(model, x))
    assert_same(before, snapshot(model))


# ---- naswot -----------------------------------------------------------------------------------------------------
def test_naswot_kernel_by_hand() -> None:
    # Codes over 2 units: [1, 1] and [1, 0]: Hamming 1, K = [[2, 1], [1, 2]], det 3.
    relu = nn.Sequential(nn.ReLU())
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    assert naswot(relu, x) == pytest.approx(math.log(3))
    # One-hot codes over 3 units: K = 2 I + J, eigenvalues 2, 2, 5: det 20.
    assert naswot(relu, torch.eye(3) - 0.5 * (1 - torch.eye(3))) == pytest.approx(math.log(20))


class TwiceReLU(nn.Module):
    """The same ReLU module called twice, then the functional and in-place forms: every call counts."""

    def __init__(self) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        a = self.relu(x.clone())          # in place: the code is read before the values change
        b = self.relu(x.clone())
        c = F.relu(x)
        d = x.clone().relu_()
        return a + b + c + d


def test_naswot_counts_every_relu_call() -> None:
    # four ReLU calls on the codes of test_naswot_kernel_by_hand: K = 4 [[2, 1], [1, 2]], det 16 * 3
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    assert naswot(TwiceReLU(), x) == pytest.approx(math.log(48))


def test_naswot_is_worst_when_all_relus_are_always_active() -> None:
    # Every code is all ones: K = U * ones, singular.
    assert naswot(nn.Sequential(nn.ReLU()), torch.rand(4, 3) + 0.1) == WORST
    assert naswot(nn.Sequential(nn.Linear(3, 2)), torch.randn(4, 3)) == WORST   # no ReLU at all


# ---- grad_norm and snip ----------------------------------------------------------------------------------------
def test_grad_norm_and_snip_of_a_linear_classifier_by_hand() -> None:
    net = chain(nn.Linear(3, 4, bias=False))
    x, y = batch(6, (3,), 4)
    w = net[0].weight.detach()
    # cross entropy (mean over the batch): dL/dW = (softmax(W x) - onehot(y))^T x / N
    grad = (torch.softmax(x @ w.T, dim=1) - F.one_hot(y, 4).float()).T @ x / len(x)
    assert grad_norm(net, x, y) == pytest.approx(float(grad.norm()), rel=1e-5)
    assert snip(net, x, y) == pytest.approx(float((w * grad).abs().sum()), rel=1e-5)
    assert loss_gradient_scores(net, x, y) == {"grad_norm": grad_norm(net, x, y), "snip": snip(net, x, y)}


def test_grad_norm_sums_the_norms_of_the_layers() -> None:
    net = chain(nn.Linear(3, 5, bias=False), nn.ReLU(), nn.Linear(5, 4, bias=False))
    x, y = batch(6, (3,), 4)
    reference = copy.deepcopy(net)
    F.cross_entropy(reference(x), y).backward()
    expected = sum(float(reference[i].weight.grad.norm()) for i in (0, 2))
    assert grad_norm(net, x, y) == pytest.approx(expected, rel=1e-6)


# ---- jacob_cov --------------------------------------------------------------------------------------------------
def test_jacobian_score_matches_the_reference_formula() -> None:
    rng = np.random.default_rng(0)
    jac = rng.normal(size=(5, 12))
    v = np.linalg.eig(np.corrcoef(jac))[0].real     # what zero-cost-nas computes
    assert jacobian_score(torch.from_numpy(jac)) == pytest.approx(-np.sum(np.log(v + K) + 1 / (v + K)), rel=1e-9)


def test_jacob_cov_of_a_linear_network_by_hand() -> None:
    # y = W x: every image's Jacobian row is 1^T W, so all rows correlate perfectly: eigenvalues N, 0, ..., 0.
    net = chain(nn.Linear(6, 3, bias=False))
    n = 4
    expected = -((math.log(n + K) + 1 / (n + K)) + (n - 1) * (math.log(K) + 1 / K))
    assert jacob_cov(net, torch.randn(n, 6)) == pytest.approx(expected, rel=1e-6)


# ---- zico -------------------------------------------------------------------------------------------------------
def test_zico_by_hand() -> None:
    net = chain(nn.Linear(3, 5, bias=False), nn.ReLU(), nn.Linear(5, 4, bias=False))
    x, y = batch(8, (3,), 4)
    grads = {0: [], 2: []}
    for xs, ys in zip(x.chunk(2), y.chunk(2)):
        part = copy.deepcopy(net)
        F.cross_entropy(part(xs), ys).backward()
        for i in grads:
            grads[i].append(part[i].weight.grad.double())
    expected = 0.0
    for g1, g2 in grads.values():
        std = (g1 - g2).abs() / 2                     # population std of two values
        mean_abs = (g1.abs() + g2.abs()) / 2
        keep = std > 0
        expected += math.log(float((mean_abs[keep] / std[keep]).sum()))
    assert zico(net, x, y) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        zico(net, x, y, splits=1)


# ---- params and macs: the compiler's figures -------------------------------------------------------------------
def test_params_and_macs_come_from_the_compile_summary() -> None:
    narrow, narrow_model = small_cnn(8)
    wide, _ = small_cnn(16)
    scores = score_proxies(["params", "macs"], summary=narrow.summary)
    assert scores["params"] == sum(p.numel() for p in narrow_model.parameters())   # an outside count agrees
    assert scores["macs"] == narrow.summary["macs"] > 0
    assert score_proxies(["params"], summary=wide.summary)["params"] > scores["params"]


# ---- every proxy: untouched model, determinism, seeds, errors --------------------------------------------------
def test_all_proxies_leave_the_model_and_the_rng_untouched_and_repeat_exactly() -> None:
    compiled, model = small_cnn()
    x, y = batch()
    before = snapshot(model)
    rng = torch.random.get_rng_state()
    first = measure_proxies(list(PROXIES), model=model, inputs=x, targets=y, summary=compiled.summary, seed=3)
    second = measure_proxies(list(PROXIES), model=model, inputs=x, targets=y, summary=compiled.summary, seed=3)
    assert_same(before, snapshot(model))
    assert torch.equal(rng, torch.random.get_rng_state())
    assert first.scores == second.scores and list(first.scores) == list(PROXIES)
    assert all(math.isfinite(v) for v in first.scores.values())
    assert list(first.seconds) == [c.name for c in plan(list(PROXIES))] == list(first.cpu_seconds)
    # the model has dropout in train mode: the seed decides its masks, so the data proxies depend on it
    other = measure_proxies(["naswot", "snip"], model=model, inputs=x, targets=y, seed=4).scores
    assert other["snip"] != first.scores["snip"]


def test_naswot_shares_the_forward_pass_of_jacob_cov_exactly() -> None:
    compiled, model = small_cnn()
    x, y = batch()
    assert [c.name for c in plan(["naswot"])] == ["naswot"]
    assert [c.name for c in plan(["naswot", "jacob_cov", "snip", "grad_norm"])] == ["jacobian", "loss_gradients"]
    shared = measure_proxies(["naswot", "jacob_cov"], model=model, inputs=x, seed=5).scores
    assert shared["naswot"] == measure_proxies(["naswot"], model=model, inputs=x, seed=5).scores["naswot"]
    torch.manual_seed(5)   # the model has dropout: the same seed gives the same masks
    assert jacobian_and_codes_scores(model, x) == shared


def test_unknown_or_unfed_proxies_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown proxy 'synflw'.*synflow"):
        measure_proxies(["synflw"], model=nn.Linear(2, 2), inputs=torch.ones(2, 2))
    with pytest.raises(ValueError, match="'snip' needs targets"):
        measure_proxies(["snip"], model=nn.Linear(2, 2), inputs=torch.ones(2, 2))
    with pytest.raises(ValueError, match="'params' needs summary"):
        measure_proxies(["params"], model=nn.Linear(2, 2), inputs=torch.ones(2, 2))


def test_a_cell_that_ignores_its_input_scores_worst_on_every_proxy() -> None:
    space = load_space_file(str(ROOT / "examples" / "spaces" / "nb201.arch"), channels=4, cells=1, size=8)
    x, y = batch(8, (3, 8, 8), 10)
    scores = {}
    for arch in ("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",          # every path is none
                 "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|",   # the output node is cut off too
                 "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|skip_connect~2|"):
        compiled = space.compile(nb201.string_to_genotype(arch))
        torch.manual_seed(0)
        scores[arch] = score_proxies(MODEL_PROXIES, model=compiled.build(), inputs=x, targets=y)
    dead, cut, alive = scores.values()
    assert all(v == WORST for v in dead.values()) and all(v == WORST for v in cut.values())
    assert all(math.isfinite(v) for v in alive.values())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_proxies_run_on_cuda_like_on_the_cpu() -> None:
    compiled, model = small_cnn()
    x, y = batch()
    names = [n for n in PROXIES if n != "jacob_cov"]   # near-singular: too sensitive to compare across devices
    cpu = score_proxies(names, model=model, inputs=x, targets=y, summary=compiled.summary)
    cuda = score_proxies(names, model=model, inputs=x.cuda(), targets=y.cuda(), summary=compiled.summary)
    assert next(model.parameters()).device.type == "cpu"
    for n in names:
        assert cuda[n] == pytest.approx(cpu[n], rel=1e-3), n


# ---- ranks, rank correlations, the ensemble --------------------------------------------------------------------
def test_average_ranks_share_ties_and_put_minus_infinity_last() -> None:
    assert average_ranks([3.0, 1.0, 3.0, WORST, WORST]).tolist() == [4.5, 3.0, 4.5, 1.5, 1.5]
    with pytest.raises(ValueError, match="NaN"):
        average_ranks([1.0, math.nan])


def test_rank_correlations_by_hand() -> None:
    # one swapped pair among 4: Spearman 1 - 6 * 2 / (4 * 15) = 0.8; Kendall (5 - 1) / 6
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert kendall([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(2 / 3)
    # tau-b with a tie in x: 2 concordant pairs, 0 discordant, 1 tied in x: 2 / sqrt((3 - 1) * 3)
    assert kendall([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))
    assert spearman([WORST, 0.0, 5.0], [10, 20, 30]) == pytest.approx(1.0)


def test_mid_rank_position() -> None:
    pool = [1.0, 2.0, 2.0, 5.0]
    assert mid_rank_position(2.0, pool) == pytest.approx((1 + 2 / 2) / 4)
    assert mid_rank_position(0.0, pool) == 0.0 and mid_rank_position(9.0, pool) == 1.0
    assert mid_rank_position(WORST, pool) == 0.0


def test_rank_ensemble_over_a_set_and_one_candidate_at_a_time_agree() -> None:
    scores = {"synflow": [10.0, 30.0, 20.0, 20.0], "naswot": [1.0, 2.0, 4.0, WORST], "params": [5, 6, 7, 8]}
    ensemble = RankEnsemble({"synflow": 2.0, "naswot": 1.0})
    # synflow ranks 1, 4, 2.5, 2.5; naswot ranks 2, 3, 4, 1; (rank - 0.5) / 4 weighted 2/3 and 1/3
    expected = [(2 / 3) * (s - 0.5) / 4 + (1 / 3) * (r - 0.5) / 4
                for s, r in zip([1, 4, 2.5, 2.5], [2, 3, 4, 1])]
    assert ensemble.rank_scores(scores) == pytest.approx(expected)
    for i in range(4):
        candidate = {name: column[i] for name, column in scores.items()}
        assert ensemble.score(candidate, scores) == pytest.approx(expected[i])
    # a candidate outside the pool: synflow 25 beats 3 of 4, naswot 1.5 beats 2 of 4 (1 and -inf)
    assert ensemble.score({"synflow": 25.0, "naswot": 1.5}, scores) == pytest.approx((2 / 3) * 0.75 + (1 / 3) * 0.5)


def test_rank_ensemble_refuses_bad_members_and_weights() -> None:
    with pytest.raises(ValueError, match="unknown proxy"):
        RankEnsemble({"synflw": 1.0})
    with pytest.raises(ValueError, match="positive"):
        RankEnsemble({"synflow": 0.0})
    with pytest.raises(ValueError, match="lacks the ensemble member"):
        RankEnsemble.equal(["synflow", "zico"]).rank_scores({"synflow": [1.0, 2.0]})
    assert set(DEFAULT_ENSEMBLE.members) <= set(PROXIES)


# ---- the bench's helpers ---------------------------------------------------------------------------------------
def test_bench_sample_mapping_and_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from bench import zero_cost_nb201 as bench

    cells = bench.sample_cells(5, seed=0)
    assert cells == bench.sample_cells(5, seed=0) and len(set(cells)) == 5
    assert len(bench.sample_cells(None, seed=0)) == 15625
    space = load_space_file(str(ROOT / "examples" / "spaces" / "nb201.arch"), channels=4, cells=1, size=8)
    for arch in cells:
        chosen = space.describe(bench.space_genotype(space, arch))
        assert [chosen[f"edge_{j}_{i}.op"] for j, i in nb201.EDGES] == [
            nb201.OPS[v] for v in nb201.string_to_genotype(arch)]
    path = tmp_path / "cache.jsonl"
    path.write_text("\n".join([
        '{"arch": "a", "key": "k", "scores": {"synflow": 1.5, "naswot": null}, "seconds": {"synflow": 0.1}}',
        '{"arch": "a", "key": "k", "scores": {"zico": 2.0}, "seconds": {"zico": 0.2}}',
        '{"arch": "a", "key": "other", "scores": {"zico": 9.0}, "seconds": {}}',
        '{"arch": "b", "key": "k", "sco']) + "\n")   # a line cut short by a kill
    cached = bench.read_cache(path, "k")
    assert cached == {"a": {"scores": {"synflow": 1.5, "naswot": WORST, "zico": 2.0},
                            "seconds": {"synflow": 0.1, "zico": 0.2}, "cpu_seconds": {}}}
    assert bench.parse_ensemble("synflow=2,zico").weights == {"synflow": 2.0, "zico": 1.0}


def test_bench_end_to_end_then_resumed_from_its_cache(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from bench import zero_cost_nb201 as bench

    argv = ["--n", "3", "--seed", "0", "--batch-size", "4", "--proxies", "naswot,jacob_cov,params",
            "--cache", str(tmp_path / "cache.jsonl"), "--out", str(tmp_path / "out.json")]
    assert bench.main(argv) == 0
    first = json.loads((tmp_path / "out.json").read_text())
    assert "scoring 3" in capsys.readouterr().out
    assert bench.main(argv) == 0
    assert "3 of 3 cells cached" in capsys.readouterr().out
    again = json.loads((tmp_path / "out.json").read_text())
    assert first["cells"] == again["cells"] and len(first["cells"]) == 3
    label = bench.ensemble_label(DEFAULT_ENSEMBLE)
    assert set(first["correlations"]) == {"naswot", "jacob_cov", "params", label}
    assert {"compile", "build", "jacobian", "params", label} <= set(first["seconds_per_cell"]["seconds"])


def test_a_score_that_overflows_to_infinity_ranks_worst_not_best() -> None:
    # synflow multiplies the layers' |weights|: 12 layers of 1e30 overflow even float64; +inf used to rank first in
    # the run that scored it and, read back from JSON (null), last after a resume
    layers = [torch.nn.Linear(4, 4) for _ in range(12)]
    for layer in layers:
        torch.nn.init.constant_(layer.weight, 1e30)
    scores = measure_proxies(["synflow", "naswot"], model=torch.nn.Sequential(*layers),
                             inputs=torch.randn(4, 4)).scores
    assert scores["synflow"] == WORST
