"""TerminateOnNaN stops (or raises) at the first non-finite batch loss, naming epoch and batch."""

import pytest

from epochal.callbacks import NonFiniteLossError, TerminateOnNaN


def _batches(callback, losses, epoch=2):
    callback.on_train_begin()
    callback.on_epoch_begin(epoch)
    for batch, loss in enumerate(losses):
        callback.on_train_batch_end(batch, {"loss": loss})
        if callback.model.stop_training:
            return batch
    return None


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_stops_at_the_first_non_finite_loss(attach, bad, capsys):
    guard = attach(TerminateOnNaN())
    assert _batches(guard, [1.0, 0.5, bad, 0.1]) == 2
    assert (guard.stopped_epoch, guard.stopped_batch) == (2, 2)
    assert "Epoch 3, batch 2: invalid loss" in capsys.readouterr().out


def test_finite_losses_and_missing_loss_do_nothing(attach):
    guard = attach(TerminateOnNaN())
    assert _batches(guard, [1.0, 1e30]) is None
    guard.on_train_batch_end(0, {})
    assert guard.stopped_batch is None


def test_raise_error_names_epoch_and_batch(attach, model):
    guard = attach(TerminateOnNaN(raise_error=True))
    with pytest.raises(NonFiniteLossError, match=r"became nan at epoch 2 \(0-based.*\), batch 1"):
        _batches(guard, [1.0, float("nan")])
    assert isinstance(NonFiniteLossError("x"), RuntimeError)
    assert model.stop_training is False


def test_state_resets_on_train_begin(attach):
    guard = attach(TerminateOnNaN())
    _batches(guard, [float("nan")])
    guard.model.stop_training = False
    guard.on_train_begin()
    assert guard.stopped_batch is None
