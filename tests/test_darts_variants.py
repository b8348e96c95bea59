"""DARTS' variants: beta-decay, Dirichlet mixing (DrNAS), one Gumbel-sampled path (GDAS), partial channels with
edge normalisation (PC-DARTS): exact resume, the supernet at one-hot weights, the remedies' effect, config errors."""
from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from compiler.api import CompileOptions
from compiler.supernet import build_supernet
from compiler.errors import ArchError
from compiler.space import load_space_file
from conftest import ROOT
from search.darts.bilevel import BilevelSearch
from search.darts.config import RELAXATIONS, DartsConfigError, darts_config, uses_edge_norm
from search.darts.memory import estimate, one_path_activation_elements
from search.darts.relaxation import (RELAXATION_CLASSES, DirichletRelaxation, GumbelRelaxation, SoftmaxRelaxation,
                                     beta_decay, beta_decay_weight, build_relaxation)
from search.data.digits import load_digits_splits
from test_darts import settings  # the DARTS settings with dotted changes, as test_darts.py builds them

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

NB201 = str(ROOT / "examples" / "spaces" / "nb201.arch")
DIGITS = dict(options=CompileOptions(input_shape=(1, 8, 8)), in_channels=1, size=8)
VARIANTS = {
    "beta": {"beta_decay.weight": 50.0},
    "drnas": {"relaxation": "dirichlet", "dirichlet.kl_weight": 1e-3},
    "gdas": {"relaxation": "gumbel"},
    "pc": {"partial_channels": 2},
}


@pytest.fixture(scope="module")
def digits():
    return load_digits_splits()


def nb201(channels: int = 4):
    return load_space_file(NB201, channels=channels, cells=1, **DIGITS)


def make_search(space, data, cfg, checkpoint=None) -> BilevelSearch:
    supernet = build_supernet(space, partial_channels=cfg.partial_channels, edge_norm=uses_edge_norm(cfg),
                              option_affine=cfg.option_affine)
    return BilevelSearch(supernet, data, cfg, seed=0, checkpoint=checkpoint, identity={"test": 1})


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_variant_trains_and_resumes_exactly(variant: str, digits, tmp_path: Path) -> None:
    _trains_and_resumes_exactly(settings(**VARIANTS[variant]), digits, tmp_path)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("variant", ["plain", *sorted(VARIANTS)])
def test_each_variant_resumes_exactly_on_the_gpu_from_data_kept_there(variant: str, digits, tmp_path: Path) -> None:
    # as the search task hands DARTS its evaluator's data: already on the GPU (the validation split is carved there,
    # the checkpoint's RNG states are read back to the host, the GPU generator's draws are restored)
    # cuDNN's and atomics' summation order varies between runs on a GPU: equal up to rounding, not bit for bit
    cfg = settings(**VARIANTS.get(variant, {}), device="cuda")
    _trains_and_resumes_exactly(cfg, digits.to("cuda"), tmp_path, tolerance=1e-4)


def _leaves(value, path: str = "") -> dict:
    """{"a[0].b": leaf, ...}: nested records as one flat mapping, to compare leaf by leaf."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _leaves(item, f"{path}.{key}").items()}
    if isinstance(value, (list, tuple)):
        return {k: v for i, item in enumerate(value) for k, v in _leaves(item, f"{path}[{i}]").items()}
    return {path: value}


def _trains_and_resumes_exactly(cfg, data, tmp_path: Path, tolerance: float = 0.0) -> None:
    space = nb201()
    full = make_search(space, data, cfg, tmp_path / "a.pt")
    history = full.run()
    assert len(history) == 2 and all(h["train_loss"] > 0 for h in history)

    class Killed(Exception):
        pass

    def kill(record: dict) -> None:
        raise Killed

    with pytest.raises(Killed):
        make_search(space, data, cfg, tmp_path / "b.pt").run(on_epoch=kill)
    resumed = make_search(space, data, cfg, tmp_path / "b.pt")
    # probabilities, losses, tau, edge weights: all equal (all but the epochs' seconds)
    want, got = _leaves(history), _leaves(resumed.run())
    assert got.keys() == want.keys()
    for key, value in want.items():
        if "seconds" not in key:
            assert got[key] == (pytest.approx(value, rel=tolerance, abs=tolerance) if tolerance else value), key
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert (torch.allclose(a.double(), b.double(), rtol=tolerance, atol=tolerance) if tolerance
                else torch.equal(a, b)), name
    assert torch.load(tmp_path / "b.pt", weights_only=True)["epochs_done"] == 2  # plain tensors and numbers


def test_variants_record_what_they_schedule(digits) -> None:
    gdas = make_search(nb201(), digits, settings(relaxation="gumbel", epochs=3)).run()
    assert [h["tau"] for h in gdas] == pytest.approx([10.0, 5.05, 0.1])
    beta = make_search(nb201(), digits, settings(**{"beta_decay.weight": 30.0}, epochs=3)).run()
    assert [h.get("beta_decay", 0.0) for h in beta] == pytest.approx([0.0, 10.0, 20.0])
    pc = make_search(nb201(), digits, settings(partial_channels=2, epochs=1)).run()
    assert len(pc[0]["edges"]) == 2 and all(abs(sum(e) - 1) < 1e-6 for e in pc[0]["edges"])  # nodes 2 and 3


def _inherited(space, supernet, genotype):
    model = supernet.build().eval()
    derived = space.compile(genotype).build().eval()
    derived.load_state_dict(supernet.inherit(model.state_dict(), genotype))
    return model, derived


def test_one_sampled_path_computes_exactly_the_chosen_subnetwork_and_nothing_else() -> None:
    space = nb201()
    supernet = build_supernet(space)
    torch.manual_seed(0)
    x = torch.randn(3, 1, 8, 8)
    rng = random.Random(1)
    for _ in range(3):
        genotype = supernet.genotype([rng.randrange(5) for _ in supernet.relaxed])
        model, derived = _inherited(space, supernet, genotype)
        choices = supernet.choices(genotype)
        called = set()
        for name, module in model.named_modules():
            if not list(module.children()):
                module.register_forward_hook(lambda m, i, o, name=name: called.add(name))
        with torch.no_grad():
            hard = [F.one_hot(torch.tensor(c), 5).float() for c in choices]
            out = model(x, weights=hard, active=list(choices))
            reference = derived(x)
        assert torch.allclose(out, reference, atol=1e-6), float((out - reference).abs().max())
        # option layers run only where they are the chosen option: relu, conv, bn per conv edge, a pool per
        # pooling edge, in each of the 3 cells
        convs = {n for n in called if "_nor_conv_" in n}
        pools = {n for n in called if "_avg_pool_3x3" in n}
        assert len(convs) == 3 * 3 * sum(c in (2, 3) for c in choices)
        assert len(pools) == 3 * sum(c == 4 for c in choices)


def test_gumbel_sample_is_one_hot_forward_and_reaches_every_logit_backward() -> None:
    torch.manual_seed(0)
    alphas = [torch.zeros(5, requires_grad=True), torch.zeros(3, requires_grad=True)]
    relaxation = GumbelRelaxation(10.0, 0.1)
    mixing = relaxation.sample(alphas, progress=0.5)
    assert mixing.active is not None and len(mixing.active) == 2
    for w, k in zip(mixing.weights, mixing.active):
        assert w[k].item() == pytest.approx(1.0) and w.sum().item() == pytest.approx(1.0)
        assert int((w.detach() != 0).sum()) == 1
    space = nb201()
    model = build_supernet(space).build()
    with torch.no_grad():  # never `none`: two `none` edges into a node leave it constant, and the conv after it
        for a in model.alphas:  # (ending in batch norm) passes no gradient back to those edges' logits
            a[0] = -30.0
    mixing = relaxation.sample(list(model.alphas), progress=0.0)
    assert 0 not in mixing.active
    F.cross_entropy(model(torch.randn(4, 1, 8, 8), weights=mixing.weights, active=mixing.active),
                    torch.tensor([0, 1, 2, 3])).backward()
    assert all(a.grad is not None and bool((a.grad != 0).any()) for a in model.alphas)
    assert relaxation.tau(0.0) == 10.0 and relaxation.tau(1.0) == pytest.approx(0.1)


def test_partial_channels_compute_a_quarter_and_shuffle_the_rest_through() -> None:
    space = nb201(channels=8)
    full, partial = build_supernet(space), build_supernet(space, partial_channels=4)
    conv = [n for n in partial.graph.nodes if n.op == "conv" and "nor_conv_3x3" in n.name]
    assert conv and all(n.shape[0] == n.meta["input_shapes"][0][0] for n in conv)
    first_stage = [n for n in conv if n.name.startswith("cell1")]
    assert all(n.shape[0] == 2 for n in first_stage)               # 8 channels / 4
    assert partial.params < full.params / 4
    # the join: options' output first, then the bypassed channels, shuffled in 4 groups
    namespace: dict = {}
    exec(partial.source.split("class ")[0], namespace)               # the helper functions of the generated file
    x = torch.arange(8.0).view(1, 8, 1, 1).expand(1, 8, 2, 2)
    mixed = torch.full((1, 2, 2, 2), -1.0)
    out = namespace["partial_join"](mixed, x, 4)
    assert out[0, :, 0, 0].tolist() == [-1.0, 2.0, 4.0, 6.0, -1.0, 3.0, 5.0, 7.0]
    reduced = namespace["partial_join"](torch.zeros(1, 2, 1, 1), torch.randn(1, 8, 2, 2), 4)
    assert reduced.shape == (1, 8, 1, 1)


def test_edge_normalised_supernet_at_one_hot_weights_equals_the_derived_network() -> None:
    """partial_channels=1 with edge normalisation: edges weighted 1 each, ops one-hot -> the derived network."""
    space = nb201()
    supernet = build_supernet(space, partial_channels=1, edge_norm=True)
    assert supernet.edge_groups == ((1, 2), (3, 4, 5)) and "edge_sum(edges[1]" in supernet.source
    torch.manual_seed(0)
    x = torch.randn(3, 1, 8, 8)
    rng = random.Random(0)
    for _ in range(3):
        genotype = supernet.genotype([rng.randrange(5) for _ in supernet.relaxed])
        model, derived = _inherited(space, supernet, genotype)
        choices = supernet.choices(genotype)
        with torch.no_grad():
            hard = [F.one_hot(torch.tensor(c), 5).float() for c in choices]
            out = model(x, weights=hard, edges=[torch.ones(2), torch.ones(3)])
            assert torch.allclose(out, derived(x), atol=1e-6)
            weighted = model(x, weights=hard)  # default edge weights: softmax of near-zero logits, about 1/n
            assert not torch.allclose(weighted, derived(x), atol=1e-4)


def test_options_without_affine_norms_still_equal_the_derived_network_at_one_hot_weights() -> None:
    space = nb201()
    supernet = build_supernet(space, option_affine=False)
    norms = [n for n in supernet.graph.nodes if n.op == "bn"]
    assert {n.attrs["affine"] for n in norms if n.meta.get("guard")} == {False}
    assert {n.attrs["affine"] for n in norms if not n.meta.get("guard")} == {True}   # stem, reductions, head
    assert supernet.params < build_supernet(space).params
    torch.manual_seed(0)
    x = torch.randn(3, 1, 8, 8)
    genotype = supernet.genotype([3, 2, 3, 1, 3, 2])
    model, derived = _inherited(space, supernet, genotype)
    with torch.no_grad():
        hard = [F.one_hot(torch.tensor(c), 5).float() for c in supernet.choices(genotype)]
        assert torch.allclose(model(x, weights=hard), derived(x), atol=1e-6)


def test_partial_channels_need_channel_keeping_options_and_a_divisor() -> None:
    darts = load_space_file(str(ROOT / "examples" / "spaces" / "darts.arch"), channels=4, layers=3, **DIGITS)
    with pytest.raises(ArchError, match="need options that keep the channel count"):
        build_supernet(darts, unrelaxed="first", partial_channels=2)
    with pytest.raises(ArchError, match="partial_channels=3 must divide the edge's 4 channels"):
        build_supernet(nb201(channels=4), partial_channels=3)


def test_beta_decay_keeps_the_logits_close_where_plain_darts_lets_one_run_away() -> None:
    """A toy architecture step: one decision whose option 0 always lowers the loss. Without the regulariser that
    option's logit runs ahead of the others and its softmax weight goes to 1; with beta-decay the gradient
    softmax(alpha) / D pulls the strongest logit down most, so the spread stays small, the ranking kept."""
    def run(weight: float, steps: int = 2000) -> torch.Tensor:
        alpha = torch.zeros(5, requires_grad=True)
        opt = torch.optim.Adam([alpha], lr=3e-2, betas=(0.5, 0.999))
        for _ in range(steps):
            loss = -torch.log_softmax(alpha, 0)[0] + weight * beta_decay([alpha])
            opt.zero_grad()
            loss.backward()
            opt.step()
        return alpha.detach()

    plain, decayed = run(0.0), run(1.0)
    spread = lambda a: float(a.max() - a.min())  # noqa: E731
    assert plain.argmax() == 0 and decayed.argmax() == 0
    assert spread(plain) > 8 and torch.softmax(plain, 0)[0] > 0.99
    assert spread(decayed) < spread(plain) / 4 and torch.softmax(decayed, 0)[0] < 0.9
    assert beta_decay([torch.zeros(5)]).item() == pytest.approx(math.log(5))
    assert beta_decay_weight(settings(**{"beta_decay.weight": 50.0}, epochs=100), 50) == 25.0


def test_dirichlet_mixing_samples_around_its_mean_and_regularises_towards_uniform() -> None:
    torch.manual_seed(0)
    alpha = torch.tensor([2.0, 0.0, -0.5], requires_grad=True)
    relaxation = DirichletRelaxation(kl_weight=1.0)
    mean = relaxation.expected([alpha])[0]
    concentration = F.elu(alpha.detach()) + 1
    assert torch.allclose(mean, concentration / concentration.sum())
    draws = torch.stack([relaxation.sample([alpha], 0.0).weights[0] for _ in range(4000)])
    assert torch.allclose(draws.mean(0), mean, atol=0.02) and bool((draws.std(0) > 0.05).all())
    relaxation.sample([alpha], 0.0).weights[0][0].backward()          # reparameterised: differentiable
    assert alpha.grad is not None and bool((alpha.grad != 0).any())
    assert relaxation.regularizer([torch.zeros(3)]).item() == pytest.approx(0.0, abs=1e-6)  # Dir(1) itself
    assert relaxation.regularizer([alpha]).item() > 0
    assert SoftmaxRelaxation().regularizer([alpha]) is None


def test_bad_variant_options_are_named() -> None:
    with pytest.raises(DartsConfigError, match="search.relaxation: error: relaxation must be one of"):
        darts_config({"relaxation": "gumble"})
    with pytest.raises(DartsConfigError, match="search.order: error: second-order"):
        darts_config({"relaxation": "gumbel", "order": 2})
    with pytest.raises(DartsConfigError, match="search.gumbel.tau_min"):
        darts_config({"relaxation": "gumbel", "gumbel": {"tau_min": 20.0}})
    with pytest.raises(DartsConfigError, match="search.partial_channels"):
        darts_config({"partial_channels": 0})
    assert uses_edge_norm(darts_config({"partial_channels": 4})) and not uses_edge_norm(darts_config({}))


def test_one_path_memory_estimate_keeps_one_option_per_decision() -> None:
    """GDAS keeps the activations of one op per edge: for nb201's equal-sized options, those of the largest option
    (conv: relu, conv, bn) everywhere, i.e. the all-conv network's plus the mixes'."""
    space = nb201()
    supernet = build_supernet(space)
    one = one_path_activation_elements(supernet)
    mixes = sum(math.prod(n.shape) for n in supernet.graph.nodes if n.op == "mixed")
    assert one == space.compile([3] * 6).graph.meta["activation_elements"] + mixes
    assert one < supernet.graph.meta["activation_elements"]
    assert estimate(supernet, 64, one_path=True).activations_mb == pytest.approx(one * 64 * 4 / 2 ** 20)
    assert estimate(build_supernet(space, partial_channels=2), 64).total_mb < estimate(supernet, 64).total_mb


def test_every_relaxation_the_config_accepts_builds_its_class() -> None:
    assert tuple(RELAXATION_CLASSES) == RELAXATIONS
    for name in RELAXATIONS:
        relaxation = build_relaxation(settings(relaxation=name))
        assert relaxation.name == name and isinstance(relaxation, RELAXATION_CLASSES[name])
    assert build_relaxation(settings(relaxation="gumbel", **{"gumbel.tau_max": 7.0})).tau(0.0) == 7.0
    assert build_relaxation(settings(relaxation="dirichlet", **{"dirichlet.kl_weight": 0.5})).kl_weight == 0.5
    assert [RELAXATION_CLASSES[n].one_path for n in RELAXATIONS] == [False, False, True]
