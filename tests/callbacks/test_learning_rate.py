"""LearningRateScheduler applies schedule functions and PyTorch schedulers at the right hooks."""

import pytest
import torch

from epochal import schedules
from epochal.callbacks import LearningRateScheduler
from epochal.callbacks.callback_list import CallbackList


def _lr(model):
    return model.optimizer.param_groups[0]["lr"]


def _drive(callback, model, epochs=3, steps=4, initial_epoch=0):
    """Run the hooks of a short fit; the learning rate seen by each batch."""
    seen = []
    callback.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        callback.on_epoch_begin(epoch)
        for batch in range(steps):
            callback.on_train_batch_begin(batch)
            seen.append(_lr(model))
            model.optimizer.step()  # no gradients: nothing moves, but PyTorch schedulers expect the call
            callback.on_train_batch_end(batch, {"loss": 1.0})
        callback.on_epoch_end(epoch, {"loss": 1.0, "val_loss": 1.0})
    return seen


def test_one_argument_schedule_per_epoch(attach, model):
    callback = attach(LearningRateScheduler(lambda epoch: 0.1 * (epoch + 1)))
    assert _drive(callback, model, steps=2) == pytest.approx([0.1, 0.1, 0.2, 0.2, 0.3, 0.3])


def test_keras_two_argument_form_receives_the_current_rate(attach, model):
    callback = attach(LearningRateScheduler(lambda epoch, lr: lr if epoch < 1 else lr * 0.5))
    assert _drive(callback, model, steps=1) == pytest.approx([0.1, 0.05, 0.025])


def test_per_batch_index_counts_across_epochs_from_initial_epoch(attach, model):
    callback = attach(LearningRateScheduler(lambda step: float(step), per="batch"), steps=3, initial_epoch=1)
    assert _drive(callback, model, epochs=3, steps=3, initial_epoch=1) == [3.0, 4.0, 5.0, 6.0, 7.0, 8.0]


def test_sets_every_param_group(attach, model):
    model.optimizer = torch.optim.SGD([{"params": [model.module.weight]}, {"params": [model.module.bias], "lr": 1.0}],
                                      lr=0.5)
    callback = attach(LearningRateScheduler(schedules.constant(0.01)))
    _drive(callback, model, epochs=1, steps=1)
    assert [g["lr"] for g in model.optimizer.param_groups] == [0.01, 0.01]


def test_torch_scheduler_is_stepped_after_each_epoch(attach, model):
    callback = attach(LearningRateScheduler(torch.optim.lr_scheduler.StepLR(model.optimizer, step_size=1, gamma=0.5)))
    assert _drive(callback, model, steps=1) == pytest.approx([0.1, 0.05, 0.025])


def test_torch_scheduler_per_batch(attach, model):
    scheduler = torch.optim.lr_scheduler.LambdaLR(model.optimizer, lambda step: 1.0 / (step + 1))
    callback = attach(LearningRateScheduler(scheduler, per="batch"))
    assert _drive(callback, model, epochs=1, steps=3) == pytest.approx([0.1, 0.05, 0.1 / 3])


def test_torch_reduce_on_plateau_is_fed_the_monitor(attach, model):
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(model.optimizer, factor=0.5, patience=0)
    callback = attach(LearningRateScheduler(plateau, monitor="val_loss"))
    assert _drive(callback, model, epochs=3, steps=1) == pytest.approx([0.1, 0.1, 0.05])


def test_torch_scheduler_on_another_optimizer_is_refused(attach, model):
    other = torch.optim.SGD(model.module.parameters(), lr=1.0)
    callback = attach(LearningRateScheduler(torch.optim.lr_scheduler.StepLR(other, step_size=1)))
    with pytest.raises(ValueError, match="built on another optimizer than the model's"):
        callback.on_train_begin()


def test_per_epoch_listens_to_no_batch_hook():
    callbacks = CallbackList([LearningRateScheduler(schedules.constant(0.1))])
    assert not callbacks.wants("on_train_batch_begin") and not callbacks.wants("on_train_batch_end")


def test_verbose_and_bad_values(attach, model, capsys):
    callback = attach(LearningRateScheduler(lambda epoch: 0.5, verbose=1))
    _drive(callback, model, epochs=1, steps=1)
    assert "Epoch 1: LearningRateScheduler setting learning rate to 0.5." in capsys.readouterr().out
    callback = attach(LearningRateScheduler(lambda epoch: "fast"))
    with pytest.raises(TypeError, match="The schedule must return a float. Received: 'fast' for index 0"):
        _drive(callback, model, epochs=1, steps=1)


@pytest.mark.parametrize("make, error, message", [
    (lambda m: LearningRateScheduler(lambda e: 0.1, per="step"), ValueError, r"`per` must be 'epoch' or 'batch'"),
    (lambda m: LearningRateScheduler(0.1), TypeError, r"`schedule` must be a function of the index"),
    (lambda m: LearningRateScheduler(torch.optim.lr_scheduler.ReduceLROnPlateau(m.optimizer), per="batch"),
     ValueError, r"`per` must be 'epoch' for a PyTorch ReduceLROnPlateau"),
])
def test_bad_arguments(model, make, error, message):
    with pytest.raises(error, match=message):
        make(model)


def test_state_round_trips(attach, model):
    callback = attach(LearningRateScheduler(lambda step: 0.1, per="batch"))
    _drive(callback, model, epochs=1, steps=3)
    assert callback.state_dict() == {"step": 3}
