"""ReduceLROnPlateau follows Keras's patience / cooldown / min_lr sequence exactly."""

import pytest
import torch

from epochal.callbacks import ReduceLROnPlateau


def _lrs_after_each_epoch(callback, model, values, key="val_loss"):
    callback.on_train_begin()
    rates = []
    for epoch, value in enumerate(values):
        callback.on_epoch_end(epoch, {"loss": 0.0, key: value})
        rates.append(model.optimizer.param_groups[0]["lr"])
    return rates


def test_patience_cooldown_and_min_lr_sequence(attach, model):
    model.optimizer.param_groups[0]["lr"] = 1.0
    callback = attach(ReduceLROnPlateau(factor=0.5, patience=2, cooldown=1, min_lr=0.1, min_delta=0.0))
    rates = _lrs_after_each_epoch(callback, model, [1.0] * 9 + [0.5, 0.5, 0.5, 0.5])
    # The cooldown epoch itself already counts towards patience again (Keras decrements, then counts).
    assert rates == pytest.approx([1, 1, .5, .5, .25, .25, .125, .125, .1, .1, .1, .1, .1])
    assert callback.wait == 3  # at min_lr nothing is reduced, so nothing resets the counter (as Keras)


def test_patience_zero_reduces_at_the_first_bad_epoch(attach, model):
    callback = attach(ReduceLROnPlateau(factor=0.1, patience=0))
    assert _lrs_after_each_epoch(callback, model, [1.0, 0.5, 0.6]) == pytest.approx([0.1, 0.1, 0.01])


def test_min_delta_and_auto_max_mode(attach, model):
    callback = attach(ReduceLROnPlateau(monitor="val_accuracy", factor=0.5, patience=1, min_delta=0.05))
    assert callback.mode == "max"
    rates = _lrs_after_each_epoch(callback, model, [0.5, 0.52, 0.6, 0.7], key="val_accuracy")
    assert rates == pytest.approx([0.1, 0.05, 0.05, 0.05])


def test_every_param_group_is_reduced_and_floored(attach, model):
    model.optimizer = torch.optim.SGD([{"params": [model.module.weight], "lr": 1.0},
                                       {"params": [model.module.bias], "lr": 0.3}], lr=1.0)
    callback = attach(ReduceLROnPlateau(factor=0.5, patience=0, min_lr=0.2))
    _lrs_after_each_epoch(callback, model, [1.0, 1.0])
    assert [g["lr"] for g in model.optimizer.param_groups] == pytest.approx([0.5, 0.2])


def test_state_resets_on_train_begin_and_round_trips(attach, model):
    callback = attach(ReduceLROnPlateau(patience=5))
    _lrs_after_each_epoch(callback, model, [1.0, 2.0, 2.0])
    state = callback.state_dict()
    assert state == {"best": 1.0, "wait": 2, "cooldown_counter": 0}
    callback.on_train_begin()
    assert callback.wait == 0 and callback.best == float("inf")
    callback.load_state_dict(state)
    assert callback.state_dict() == state


def test_missing_monitor_warns_and_changes_nothing(attach, model):
    callback = attach(ReduceLROnPlateau(patience=0))
    callback.on_train_begin()
    with pytest.warns(UserWarning, match="ReduceLROnPlateau is monitoring `val_loss`"):
        callback.on_epoch_end(0, {"loss": 1.0})
    assert model.optimizer.param_groups[0]["lr"] == 0.1


def test_verbose_message(attach, model, capsys):
    callback = attach(ReduceLROnPlateau(patience=0, factor=0.5, verbose=1))
    _lrs_after_each_epoch(callback, model, [1.0, 1.0])
    assert "Epoch 2: ReduceLROnPlateau reducing learning rate to 0.05." in capsys.readouterr().out


@pytest.mark.parametrize("kwargs, message", [
    ({"factor": 2}, r"`factor` must be < 1.0. Received: factor=2"),
    ({"factor": 0.0}, r"`factor` must be > 0.0. Received: factor=0.0"),
    ({"patience": -1}, r"`patience` must be a non-negative integer. Received: patience=-1"),
    ({"cooldown": 1.5}, r"`cooldown` must be a non-negative integer. Received: cooldown=1.5"),
    ({"min_lr": -1.0}, r"`min_lr` must be >= 0. Received: min_lr=-1.0"),
    ({"mode": "up"}, r"`mode` must be one of 'auto', 'min', 'max'. Received: mode='up'"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ReduceLROnPlateau(**kwargs)
