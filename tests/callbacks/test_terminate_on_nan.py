"""TerminateOnNaN stops (or raises) after a non-finite batch loss, naming epoch and batch, without a sync per batch."""

import pytest
import torch

import epochal
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


def test_losses_stay_on_the_device_until_a_check_which_names_the_first_bad_batch(attach, monkeypatch, capsys):
    from epochal.logs import Logs

    reads = []
    resolved = Logs._resolved
    monkeypatch.setattr(Logs, "_resolved", lambda self: reads.append(1) or resolved(self))
    guard = attach(TerminateOnNaN(check_every=3))
    guard.on_train_begin()
    guard.on_epoch_begin(0)
    for batch, loss in enumerate([1.0, float("nan"), 2.0, 3.0]):
        guard.on_train_batch_end(batch, Logs(("loss", "accuracy"), torch.tensor([loss, 0.5])))
        if guard.model.stop_training:
            break
    assert reads == []  # no batch's logs were copied to the host one by one
    assert batch == 2 and guard.stopped_batch == 1  # stopped at the check after 3 batches; batch 1 was bad
    assert "Epoch 1, batch 1: invalid loss nan" in capsys.readouterr().out


class NanAt(torch.nn.Module):
    """A linear layer whose output turns NaN from its `at`-th training call on."""

    def __init__(self, at):
        super().__init__()
        self.linear, self.at, self.calls = torch.nn.Linear(2, 1), at, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
        return self.linear(x) * (float("nan") if self.calls >= self.at else 1.0)


@pytest.mark.parametrize("check_every, batches_run", [(1, 5), (4, 8), (32, 10)])
def test_in_fit_the_stop_falls_at_the_first_check_and_names_the_bad_batch(check_every, batches_run):
    module = NanAt(at=5)
    model = epochal.Model(module, device="cpu")
    model.compile(optimizer="sgd", loss="mse")
    guard = TerminateOnNaN(check_every=check_every)
    history = model.fit(torch.ones(40, 2), torch.zeros(40, 1), batch_size=4, epochs=3, callbacks=[guard], verbose=0)
    assert module.calls == batches_run  # 1: Keras's placement; 32 > 10 batches: the epoch's end
    assert (guard.stopped_epoch, guard.stopped_batch) == (0, 4)
    assert history.epoch == [0]


def test_check_every_must_be_a_positive_integer():
    with pytest.raises(ValueError, match="`check_every` must be a positive integer. Received: check_every=0"):
        TerminateOnNaN(check_every=0)
