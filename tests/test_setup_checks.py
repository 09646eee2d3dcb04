"""Set-ups that would train without complaint are refused before training: an optimizer over another
module's parameters, learning rates that are negative or not finite (optimizer, schedule, PyTorch scheduler)."""

import pytest
import torch

import epochal
from epochal.callbacks import LearningRateScheduler

X, Y = torch.randn(16, 3), torch.randn(16, 1)


def _model():
    return epochal.Model(torch.nn.Linear(3, 1), device="cpu")


def test_an_optimizer_over_another_modules_parameters_is_refused_at_compile():
    other = torch.nn.Linear(3, 1)
    with pytest.raises(ValueError, match=r"holds 2 parameter\(s\) that are not the module's \(shapes \(1, 3\), \(1,\)\)"):
        _model().compile(optimizer=torch.optim.SGD(other.parameters(), lr=0.1), loss="mse")


@pytest.mark.parametrize("lr", [-0.1, float("nan"), float("inf")])
def test_a_negative_or_non_finite_learning_rate_is_refused_before_training(lr):
    model = _model()
    model.compile(optimizer="sgd", loss="mse")
    model.optimizer.param_groups[0]["lr"] = lr  # set after compile, as the CLI's --lr did
    with pytest.raises(ValueError, match=rf"learning rate \(`lr` of param group 0\) must be a finite number >= 0. "
                                         rf"Received: {lr}"):
        model.fit(X, Y, verbose=0)


def test_a_schedule_returning_nan_is_refused_before_that_epoch_trains():
    model = _model()
    model.compile(optimizer="sgd", loss="mse")
    seen = []
    schedule = LearningRateScheduler(lambda epoch: float("nan") if epoch == 2 else 0.1)
    record = epochal.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(epoch))
    with pytest.raises(ValueError, match=r"learning rate the schedule returned for index 2 must be a finite number"):
        model.fit(X, Y, epochs=4, verbose=0, callbacks=[schedule, record])
    assert seen == [0, 1]


def test_a_pytorch_scheduler_driving_the_rate_negative_is_refused():
    model = _model()
    model.compile(optimizer="sgd", loss="mse")
    falling = torch.optim.lr_scheduler.LambdaLR(model.optimizer, lambda step: 1.0 - step)
    with pytest.raises(ValueError, match=r"rate the PyTorch scheduler set after batch 1 \(param group 0\) must be a "
                                         r"finite number >= 0. Received: -0.01"):
        model.fit(X, Y, epochs=1, batch_size=4, verbose=0, callbacks=[LearningRateScheduler(falling, per="batch")])
