"""Rollback: a failed batch sends the run back to its last good state, whose replay is exact, so skipping
the batch gives what training without it gives; lowering the rate, the budget, spikes, and the same result
whether the run was interrupted and resumed or not."""

import collections

import pytest
import torch

import epochal
from epochal.callbacks import BackupAndRestore, Callback, Rollback
from epochal.training.preemption import TrainingInterrupted

POISONED = 100  # sample 100 sits in batch 6 of every epoch (batch size 16, no shuffling)


def _data(poison=float("nan"), at=POISONED):
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(256, 3, generator=generator)
    y = x.sum(1, keepdim=True)
    y[at] = poison
    return x, y


def _fit(callbacks, x, y, epochs=3, **compile_options):
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
    model = epochal.Model(module, device="cpu")
    model.compile(optimizer="adam", loss="mse", **compile_options)
    history = model.fit(x, y, epochs=epochs, batch_size=16, shuffle=False, verbose=0, check_finite=False,
                        callbacks=callbacks)
    return model, history


def _weights(model):
    return list(model.module.state_dict().values())


def _same(a, b):
    return all(torch.equal(p, q) for p, q in zip(_weights(a), _weights(b)))


def _without_batches(x, y, first, count):
    keep = torch.ones(len(x), dtype=torch.bool)
    keep[first * 16:(first + count) * 16] = False
    return x[keep], y[keep]


@pytest.mark.parametrize("steps_per_execution", [1, 2])
@pytest.mark.parametrize("restore_from", ["memory", "backup"])
def test_skipping_a_failed_batch_equals_training_without_it(tmp_path, restore_from, steps_per_execution):
    x, y = _data()
    callbacks = [Rollback(remedy="skip", check_every=4, restore_from=restore_from, verbose=0)]
    if restore_from == "backup":
        callbacks.append(BackupAndRestore(tmp_path / "backup"))
    model, history = _fit(callbacks, x, y, steps_per_execution=steps_per_execution)
    # the whole execution holding the failed batch is skipped (2 batches with steps_per_execution=2)
    reference, expected = _fit([], *_without_batches(x, y, 6 // steps_per_execution * steps_per_execution,
                                                     steps_per_execution), steps_per_execution=steps_per_execution)
    assert _same(model, reference)
    assert history.history == expected.history
    assert [(e["kind"], e["epoch"], e["batch"], e["reason"], e["rollback"]) for e in history.events] == [
        ("rollback", epoch, 6 + steps_per_execution - 1, "nan", epoch + 1) for epoch in range(3)]


def test_lowering_the_rate_equals_a_run_whose_rate_was_lowered_at_the_failed_batches():
    x, y = _data(poison=0.0)
    x = x * 3  # plain SGD at this rate blows up within a few batches

    def diverging(callbacks):
        torch.manual_seed(0)
        model = epochal.Model(torch.nn.Linear(3, 1), device="cpu")
        model.compile(optimizer=torch.optim.SGD(model.module.parameters(), lr=0.2), loss="mse")
        history = model.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0, callbacks=callbacks)
        return model, history

    guard = Rollback(on="spike", remedy="lower_lr", factor=0.5, spike_factor=3, window=2, check_every=4, retries=9,
                     verbose=0)
    model, history = diverging([guard])
    lowered = collections.Counter((event["epoch"], event["batch"]) for event in history.events)
    assert list(lowered) == [(0, 2), (0, 3)] and not any(event["exhausted"] for event in history.events)

    class LowerAt(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_begin(self, batch, logs=None):
            self.model.optimizer.param_groups[0]["lr"] *= 0.5 ** lowered[(self.epoch, batch)]

    lower = LowerAt()
    reference, expected = diverging([lower])
    assert _same(model, reference) and history.history == expected.history
    assert model.optimizer.param_groups[0]["lr"] == 0.05 and expected.history["loss"][0] < 1e3


def test_past_its_budget_it_stops_at_the_last_good_state():
    x, y = _data()
    guard = Rollback(on="nan", remedy="lower_lr", retries=2, check_every=4, verbose=0)
    with pytest.warns(UserWarning, match=r"Rollback: epoch 1, batch 6: loss nan, after 2 rollback\(s\) \(retries=2\): "
                                         r"training stops at the last good state, after batch 4 of epoch 1"):
        model, history = _fit([guard], x, y)
    assert [e["exhausted"] for e in history.events] == [False, False, True] and history.epoch == [0]
    before, _ = _fit([], *_without_batches(x, y, 4, 12), epochs=1)  # the first 4 batches only
    assert _same(model, before), "stopped at the state after batch 4, the last good one"


def test_a_spike_above_the_recent_median_is_rolled_back():
    x, y = _data(poison=1e4, at=12 * 16 + 5)  # in batch 12: a median of 12 good losses to judge it by
    model, history = _fit([Rollback(on="spike", remedy="skip", spike_factor=20, check_every=8, verbose=0)], x, y,
                          epochs=1)
    [event] = history.events
    assert (event["reason"], event["batch"]) == ("spike", 12) and event["loss"] > event["threshold"]
    reference, _ = _fit([], *_without_batches(x, y, 12, 1), epochs=1)
    assert _same(model, reference)


@pytest.mark.parametrize("stop_at", [3, 9, 22], ids=["before the failure", "after it", "in the next epoch"])
def test_a_run_interrupted_and_resumed_rolls_back_exactly_as_one_never_interrupted(tmp_path, stop_at,
                                                                                     sigterm_after):
    x, y = _data()

    def callbacks(folder, at):
        return [Rollback(check_every=4, verbose=0), BackupAndRestore(folder, save_freq=5), sigterm_after(at)]

    whole, expected = _fit(callbacks(tmp_path / "whole", None), x, y)
    with pytest.raises(TrainingInterrupted):
        _fit(callbacks(tmp_path / "parts", stop_at), x, y)
    resumed, history = _fit(callbacks(tmp_path / "parts", None), x, y)
    assert _same(resumed, whole)
    assert history.history == expected.history
    assert [e["batch"] for e in history.events] == [6, 6, 6] and len(history.epoch) == 3
    assert resumed.optimizer.param_groups[0]["lr"] == 1e-3 * 0.5 ** 3


def test_bad_settings_are_refused_before_training():
    x, y = _data()
    with pytest.raises(ValueError, match=r"`on` must be one or more of 'nan', 'spike'. Received: on='inf'"):
        Rollback(on="inf")
    with pytest.raises(ValueError, match=r"`factor` must be a number in \(0, 1\). Received: factor=2"):
        Rollback(factor=2)
    with pytest.raises(ValueError, match="restore_from=\"backup\"\\)` returns to the newest backup"):
        _fit([Rollback(restore_from="backup")], x, y)
    with pytest.raises(ValueError, match="at most one Rollback. Received: 2"):
        _fit([Rollback(), Rollback()], x, y)


def test_each_rollback_is_in_the_history_file_and_the_report(tmp_path):
    from epochal.analysis.html_report import render_report

    x, y = _data()
    _, history = _fit([Rollback(remedy="skip", check_every=4, verbose=0)], x, y, epochs=1)
    history.to_json(tmp_path / "history.json")
    loaded = epochal.History.load(tmp_path / "history.json")
    assert [(e["kind"], e["batch"], e["back_to"]) for e in loaded.events] == [("rollback", 6, [0, 4])]
    page = render_report(loaded)
    assert "<h2>Events</h2>" in page and "loss nan (nan): rolled back to batch 4 of that epoch, rollback 1 of 3" in page


def test_docstring_example():
    import doctest

    from epochal.callbacks import rollback

    assert doctest.testmod(rollback).failed == 0
