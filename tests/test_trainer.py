"""The trainer: schedules, parameter groups, averaging, whitening, TTA, budgets, failures as results."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from compiler.api import CompileOptions, compile_source
from search.data.digits import load_digits_splits
from search.data.loader import DeviceLoader
from search.training import ConfigError, TrainerConfig, seed_everything, train, trainer_config
from search.training.averaging import Ema, Lookahead
from search.training.config import LookaheadConfig, OptimizerConfig, ScheduleConfig
from search.training.init import INITS
from search.training.optim import build_optimizer, param_groups
from search.training.precision import PRECISIONS
from search.training.schedules import lr_factor
from search.training.tta import TTA, evaluate
from search.training.whitening import patch_covariance, whiten_conv

CNN = """
model cnn(num_classes = 10, in_channels = 1, size = 8) {
    input x: [in_channels, size, size]
    output x -> conv(16, 3) -> bn -> relu -> conv(32, 3) -> bn -> relu -> maxpool(2)
             -> conv(32, 3) -> bn -> relu -> global_avgpool -> flatten -> linear(num_classes)
}
"""


@pytest.fixture(scope="module")
def digits():
    return load_digits_splits()


def cnn(data, seed: int = 0) -> nn.Module:
    seed_everything(seed)
    return compile_source(CNN, options=CompileOptions(input_shape=data.input_shape),
                          num_classes=data.num_classes).build()


QUICK = {"budget": {"steps": 30}, "batch_size": 64, "optimizer": {"lr": 0.1}, "progress": False,
         "cpu_threads": 1}   # one thread: fastest for a model this small, and the machine may be shared


# ---- schedules and optimizer groups -----------------------------------------------------------------------------
def test_schedules_warm_up_then_reach_the_final_factor() -> None:
    cosine = lr_factor(ScheduleConfig("cosine", warmup=10, start_factor=0.1, final_factor=0.0), 110)
    assert cosine(0) == pytest.approx(0.1) and cosine(5) == pytest.approx(0.55) and cosine(10) == pytest.approx(1)
    assert cosine(60) == pytest.approx(0.5) and cosine(110) == pytest.approx(0.0)
    linear = lr_factor(ScheduleConfig("linear", warmup=0.23, start_factor=0.2, final_factor=0.07), 476)
    assert linear(0) == pytest.approx(0.2) and linear(109) == pytest.approx(1.0)       # airbench's triangle
    assert linear(476) == pytest.approx(0.07) and linear(292) == pytest.approx(1 - 0.93 * 183 / 367)
    onecycle = lr_factor(ScheduleConfig("onecycle", warmup=0.5, start_factor=0.0, final_factor=0.0), 100)
    assert onecycle(25) == pytest.approx(0.5) and onecycle(50) == pytest.approx(1)
    assert onecycle(75) == pytest.approx(0.5)
    constant = lr_factor(ScheduleConfig("constant", final_factor=0.0), 50)
    assert constant(0) == constant(49) == 1.0
    with pytest.raises(ConfigError, match="unknown schedule"):
        lr_factor(ScheduleConfig("cosinus"), 10)


def test_no_weight_decay_on_norms_and_biases_and_norm_lr_scale(digits) -> None:
    model = cnn(digits)
    groups = param_groups(model, OptimizerConfig(weight_decay=0.01))
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    for name, p in model.named_parameters():
        assert (id(p) in decayed) == (p.ndim > 1), name
    scaled = build_optimizer(model, OptimizerConfig(lr=0.1, weight_decay=0.01, decay_norm_and_bias=True,
                                                    norm_lr_scale=64))
    bn_group = next(g for g in scaled.param_groups if any(p is model.bn1.bias for p in g["params"]))
    assert bn_group["lr"] == pytest.approx(6.4) and bn_group["lr"] * bn_group["weight_decay"] == pytest.approx(1e-3)
    conv_group = next(g for g in scaled.param_groups if any(p is model.conv1.bias for p in g["params"]))
    assert conv_group["weight_decay"] == 0.01                                   # biases decayed when asked


# ---- training runs --------------------------------------------------------------------------------------------
def test_training_is_seeded_and_learns(digits) -> None:
    a = train(cnn(digits), digits, QUICK)
    b = train(cnn(digits), digits, QUICK)
    assert a.ok and a.metrics["steps"] == 30 and a.metrics["val_acc"] > 0.8
    assert a.metrics["val_acc"] == b.metrics["val_acc"] and a.metrics["train_loss"] == b.metrics["train_loss"]
    for (k, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(x, y), k
    assert a.history[-1]["step"] == 30 and a.metrics["images_per_s"] > 0 and 0 <= a.metrics["test_acc"] <= 1


def test_budget_in_epochs_allows_fractions(digits) -> None:
    result = train(cnn(digits), digits, QUICK, budget={"epochs": 1.5, "steps": None})
    per_epoch = len(digits.train) // 64
    assert result.metrics["steps"] == math.ceil(1.5 * per_epoch) and len(result.history) == 2


def test_nan_loss_is_reported_as_diverged(digits) -> None:
    result = train(cnn(digits), digits, QUICK, optimizer={"lr": 1e30, "momentum": 0.0}, log_every=2)
    assert result.status == "diverged" and not result.ok
    assert "lr" in result.message and "\n" not in result.message
    assert result.metrics["status"] == "diverged" and result.metrics["steps"] < 30


class RaisesOOM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def test_out_of_memory_is_reported_as_oom(digits) -> None:
    result = train(RaisesOOM(), digits, QUICK)
    assert result.status == "oom" and "batch_size" in result.message and result.metrics["status"] == "oom"


def test_gradient_clipping_bounds_each_step(digits) -> None:
    model = cnn(digits)
    before = [p.detach().clone() for p in model.parameters()]
    train(model, digits, QUICK, grad_clip=1e-6, optimizer={"lr": 0.1, "momentum": 0.0, "weight_decay": 0.0},
          schedule={"name": "constant"}, augment={"flip": "none"})
    moved = math.sqrt(sum(float((p.detach() - q).pow(2).sum()) for p, q in zip(model.parameters(), before)))
    assert 0 < moved <= 30 * 0.1 * 1e-6 * 1.001


def test_options_combine_adamw_smoothing_ema_tta_keep_best(digits, monkeypatch) -> None:
    optimizers, averages = [], []
    monkeypatch.setattr("search.training.trainer.build_optimizer",
                        lambda *args, **kw: optimizers.append(build_optimizer(*args, **kw)) or optimizers[-1])

    class Recorded(Ema):   # keeps the raw weights of the last step next to their average
        def step(self, model: nn.Module, step: int) -> None:
            super().step(model, step)
            self.raw = [p.detach().clone() for p in model.parameters()]

    monkeypatch.setattr("search.training.trainer.Ema", lambda *args: averages.append(Recorded(*args)) or averages[-1])
    result = train(cnn(digits), digits, QUICK, budget={"epochs": 3, "steps": None},
                   optimizer={"name": "adamw", "lr": 3e-3, "weight_decay": 0.05}, label_smoothing=0.1,
                   ema={"enabled": True, "decay": 0.9}, tta="flip", keep_best=True, precision="bf16")
    assert result.ok and result.metrics["val_acc"] > 0.8   # learns (measured: 0.91; chance: 0.1)
    assert result.metrics["val_acc"] == result.metrics["best_val_acc"]         # finished on the best epoch
    assert result.metrics["precision"] == "bf16"
    [optimizer], [ema] = optimizers, averages
    assert type(optimizer) is torch.optim.AdamW and {g["weight_decay"] for g in optimizer.param_groups} == {0.0, 0.05}
    final = list(result.model.parameters())   # the average's weights, not the last step's
    assert all(torch.equal(p, q) for p, q in zip(final, ema.module.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(final, ema.raw))
    model, loader = result.model.eval(), DeviceLoader(digits.test, 1000, "cpu", digits.mean, digits.std)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):   # flip TTA by hand
        correct = sum(int(((model(x) + model(x.flip(-1))) / 2).argmax(1).eq(y).sum()) for x, y in loader)
    # digits are not mirror-symmetric: flipping costs accuracy here (measured: 0.93 -> 0.83)
    assert result.metrics["test_acc_tta"] == correct / len(digits.test) < result.metrics["test_acc"]


def test_frozen_norm_weights_stay_one(digits) -> None:
    model = cnn(digits)
    train(model, digits, QUICK, train_norm_weights=False)
    assert torch.equal(model.bn1.weight.detach(), torch.ones(16)) and not model.bn1.bias.detach().eq(0).all()


def test_unknown_options_are_located_errors() -> None:
    with pytest.raises(ConfigError) as err:
        trainer_config({"optimizer": {"lr": "fast"}})
    assert "trainer.optimizer.lr" in str(err.value)
    with pytest.raises(ConfigError, match="trainer.optimiser"):
        trainer_config({"optimiser": {}})
    with pytest.raises(ConfigError, match="unknown optimizer"):
        train(nn.Linear(1, 1), load_digits_splits(), optimizer={"name": "rmsprop"}, budget={"steps": 1})
    assert isinstance(trainer_config(), TrainerConfig)


# ---- the pieces of the airbench recipe ------------------------------------------------------------------------
def test_lookahead_pulls_towards_the_slow_weights_and_finishes_on_them() -> None:
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    lookahead = Lookahead(model, LookaheadConfig(enabled=True, every=2, decay=0.5, power=1.0), total_steps=4)
    with torch.no_grad():
        model.weight.fill_(1.0)
    lookahead.step(1)                                   # not a sync step
    assert model.weight.item() == 1.0
    lookahead.step(2)                                   # alpha = 0.5**2 * (2/4) = 0.125: slow = 0.875
    assert model.weight.item() == pytest.approx(0.875)
    with torch.no_grad():
        model.weight.fill_(5.0)
    lookahead.finish()                                  # alpha 1: back to the slow weights
    assert model.weight.item() == pytest.approx(0.875)


def test_whitened_conv_decorrelates_patches_and_is_frozen() -> None:
    images = torch.randn(64, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    images[:, 1] = 0.7 * images[:, 0] + 0.3 * images[:, 1]          # correlated channels
    conv = nn.Conv2d(3, 24, 2, padding=0, bias=False)
    whiten_conv(conv, images, eps=0.0)
    out = conv(images)[:, :12]
    flat = out.permute(0, 2, 3, 1).reshape(-1, 12).double()
    assert torch.allclose(flat.T @ flat / len(flat), torch.eye(12, dtype=torch.float64), atol=1e-4)
    assert torch.allclose(conv.weight[12:], -conv.weight[:12]) and not conv.weight.requires_grad
    assert patch_covariance(images, (2, 2)).shape == (12, 12)
    with pytest.raises(ConfigError, match="at most 24"):
        whiten_conv(nn.Conv2d(3, 25, 2), images, eps=0.0)


def test_dirac_init_makes_square_convs_identity_maps() -> None:
    model = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 6, 3, padding=1))
    INITS["dirac"](model)
    x = torch.randn(2, 4, 5, 5)
    assert torch.allclose(model[0](x), x)
    assert torch.allclose(model[1](x)[:, :4], x)                   # the first 4 of 6 filters


def test_tta_averages_logits_over_the_views(digits) -> None:
    model = cnn(digits).eval()
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(TTA["flip"](model, x), (model(x) + model(x.flip(-1))) / 2, atol=1e-6)
        both = TTA["flip_translate"](model, x)
    assert both.shape == (3, 10)
    loader = DeviceLoader(digits.test, 100, "cpu", digits.mean, digits.std)
    with torch.no_grad():
        expected = sum(int((TTA["flip"](model, x).argmax(1) == y).sum()) for x, y in loader) / len(digits.test)
    assert evaluate(model, loader, PRECISIONS["fp32"], "flip") == pytest.approx(expected)


def test_airbench_options_run_end_to_end_on_cpu(digits) -> None:
    """Whitening, bias freezing, dirac init, lookahead, alternating flip, sum loss and TTA, on an airbench-like net."""
    arch = """
model tiny(num_classes = 10, in_channels = 1, size = 8) {
    input x: [in_channels, size, size]
    output x -> conv(8, 2, padding=0) -> gelu -> conv(16, 3, bias=false) -> maxpool(2) -> bn -> gelu
             -> global_avgpool -> flatten -> linear(num_classes, bias=false) -> scale(1 / 9)
}"""
    seed_everything(0)
    model = compile_source(arch).build()
    stem_before = model.conv1.weight.detach().clone()
    result = train(model, digits, QUICK, budget={"epochs": 2, "steps": None}, loss_reduction="sum",
                   optimizer={"lr": 3e-2, "momentum": 0.85, "decay_norm_and_bias": True, "norm_lr_scale": 64},
                   schedule={"name": "linear", "warmup": 0.23, "start_factor": 0.2, "final_factor": 0.07},
                   label_smoothing=0.2, init="dirac", train_norm_weights=False, tta="flip_translate",
                   whiten_stem={"enabled": True, "images": 500, "bias_epochs": 1},
                   lookahead={"enabled": True}, augment={"flip": "alternate", "translate": 1, "pad_mode": "reflect"})
    assert result.ok, result.message
    assert not torch.equal(model.conv1.weight, stem_before) and not model.conv1.weight.requires_grad
    assert not model.conv1.bias.requires_grad                                  # frozen after bias_epochs
    assert result.metrics["val_acc"] > 0.25 and "test_acc_tta" in result.metrics    # learns (chance: 0.1)


@pytest.mark.slow
def test_torch_compile_trains_like_eager(digits) -> None:
    """torch.compile (inductor on the CPU: about a minute of compilation) gives the same run as eager mode, and
    the state dict keeps the generated module's names (so weights.pt loads into model.py)."""
    options = dict(QUICK, budget={"epochs": 2, "steps": None}, whiten_stem={"enabled": True, "bias_epochs": 1})
    eager, compiled = cnn(digits), cnn(digits)
    a = train(eager, digits, options)
    b = train(compiled, digits, options, compile=True)
    assert b.ok and b.metrics["compile"] is True
    assert list(compiled.state_dict()) == list(eager.state_dict())
    assert b.metrics["val_acc"] == pytest.approx(a.metrics["val_acc"], abs=1.5 / len(digits.val))
