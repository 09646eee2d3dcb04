"""find_lr: an exponential sweep that suggests a rate and leaves the model exactly as it was."""

import math

import pytest
import torch

import epochal
from epochal.tune.lr_finder import find_lr


def regression():
    x = torch.randn(256, 4)
    return x, x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])


def compiled():
    model = epochal.Model(torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.1), torch.nn.Linear(8, 1)),
                          device="cpu")
    model.compile(optimizer="adam", loss="mse")
    return model


def test_the_sweep_restores_weights_optimizer_state_and_random_state():
    x, y = regression()
    model = compiled()
    model.fit(x, y, epochs=1, verbose=0)  # so the optimizer has state to restore
    weights = {k: v.clone() for k, v in model.module.state_dict().items()}
    optimizer = model.optimizer.state_dict()
    moments = [s["exp_avg"].clone() for s in model.optimizer.state.values()]
    rng = torch.random.get_rng_state()
    result = model.find_lr(x, y, steps=30, end_lr=100.0)
    assert all(torch.equal(v, weights[k]) for k, v in model.module.state_dict().items())
    assert model.optimizer.param_groups[0]["lr"] == optimizer["param_groups"][0]["lr"] == 0.001
    assert all(torch.equal(s["exp_avg"], m) for s, m in zip(model.optimizer.state.values(), moments))
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert len(result.lrs) == len(result.losses) == len(result.smoothed) <= 30


def test_rates_grow_exponentially_and_the_suggestion_precedes_the_lowest_loss():
    x, y = regression()
    result = find_lr(compiled(), x, y, start_lr=1e-4, end_lr=10.0, steps=41, batch_size=128, stop_factor=math.inf)
    assert result.lrs[0] == pytest.approx(1e-4) and result.lrs[-1] == pytest.approx(10.0)
    assert result.lrs[8] == pytest.approx(1e-3)  # 5 decades in 40 steps
    lowest = result.lrs[result.smoothed.index(min(result.smoothed))]
    assert result.lrs[4] <= result.suggestion <= lowest  # the first tenth is not searched


def test_the_sweep_stops_once_the_loss_blows_up():
    x, y = regression()
    result = find_lr(compiled(), x, y, start_lr=1e-3, end_lr=1e6, steps=60)
    assert len(result.lrs) < 60
    assert result.smoothed[-1] > 4 * min(result.smoothed[:-1]) or not math.isfinite(result.losses[-1])


def test_the_plot_is_loss_against_a_log_learning_rate():
    pytest.importorskip("matplotlib")
    x, y = regression()
    figure = find_lr(compiled(), x, y, steps=20).plot()
    [axis] = figure.axes
    assert axis.get_xscale() == "log" and axis.get_xlabel() == "learning rate"


def test_errors():
    x, y = regression()
    with pytest.raises(RuntimeError, match=r"call `compile\(\)` before `find_lr\(\)`"):
        epochal.Model(torch.nn.Linear(4, 1)).find_lr(x, y)
    with pytest.raises(ValueError, match="`start_lr` must be positive and below `end_lr`"):
        find_lr(compiled(), x, y, start_lr=1.0, end_lr=0.1)
    with pytest.raises(ValueError, match="`steps` must be at least 2"):
        find_lr(compiled(), x, y, steps=1)
