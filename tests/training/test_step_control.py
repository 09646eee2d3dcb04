"""Training controlled by steps (training batches): `validation_every`, `max_steps` and `max_time`, and
ModelCheckpoint(save_freq=N) saving after the validation at its batch."""

import datetime
import itertools
import json
import math
import os

import pytest
import torch

import epochal
import epochal.training.step_control as step_control
from epochal.callbacks import BackupAndRestore, Callback, JSONLinesLogger, ModelCheckpoint, TensorBoard

LOSS = epochal.losses.SparseCategoricalCrossentropy(from_logits=True)
X = torch.randn(44, 4, generator=torch.Generator().manual_seed(5))
Y = (X[:, 0] > 0).long()
VAL = (X[:12] + 0.3, Y[:12])


def model(metrics=("accuracy",)):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Dropout(0.2), torch.nn.Linear(8, 2))
    model = epochal.Model(net, device="cpu")
    model.compile(optimizer="adam", loss=LOSS, metrics=list(metrics))
    return model


def fit(model, **options):
    torch.manual_seed(1)  # the shuffles and dropout draw from here
    return model.fit(X, Y, batch_size=8, verbose=0, **{"epochs": 2, "validation_data": VAL, **options})


class Events(Callback):
    def __init__(self):
        super().__init__()
        self.events = []

    def on_train_batch_end(self, batch, logs=None):
        self.events.append(("batch", batch))

    def on_validation_end(self, step, logs=None):
        self.events.append(("validation", step))

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(("epoch_end", epoch))

    def on_train_end(self, logs=None):
        self.events.append(("train_end", sorted(logs)))


def test_validation_every_n_batches_runs_between_batches_and_is_recorded_by_step():
    events = Events()
    history = fit(model(), validation_every=4, callbacks=[events])  # 6 batches per epoch, 12 in all
    batches = lambda *indices: [("batch", i) for i in indices]  # noqa: E731
    assert events.events == (batches(0, 1, 2, 3) + [("validation", 4)] + batches(4, 5) + [
        ("validation", 6), ("epoch_end", 0)] + batches(0, 1) + [("validation", 8)] + batches(2, 3, 4, 5) + [
        ("validation", 12), ("epoch_end", 1), ("train_end", ["accuracy", "loss", "val_accuracy", "val_loss"])])
    # Step 12 ends epoch 1: its own validation serves the point, which does not run twice.
    assert history.validation_steps == [4, 6, 8, 12]
    assert history.validation_history["val_loss"][1::2] == history.history["val_loss"]  # the epoch ends'
    assert history.params["validation_every"] == 4 and history.epoch == [0, 1]


def test_a_mid_epoch_validation_sees_the_weights_after_its_batch():
    """The validation at step 10 equals `evaluate` of a run stopped by `max_steps=10`."""
    history = fit(model(), validation_every=5, epochs=3)
    stopped = model()
    fit(stopped, max_steps=10, epochs=3)
    expected = stopped.evaluate(*VAL, verbose=0)
    at = history.validation_steps.index(10)
    assert history.validation_history["val_loss"][at] == pytest.approx(expected["loss"], rel=1e-6)


def test_validating_every_batch_changes_nothing_in_training():
    """Same weights, optimizer state and training logs with or without mid-epoch validations — with
    dropout, shuffling and a metric computed over the whole epoch (AUC) that each validation resets."""
    plain, validated = model(("accuracy", "auc")), model(("accuracy", "auc"))
    expected, history = fit(plain), fit(validated, validation_every=1)
    for a, b in zip(plain.module.parameters(), validated.module.parameters()):
        assert torch.equal(a, b)
    assert history.history == expected.history
    assert len(history.validation_steps) == 12


def test_a_point_on_an_epochs_last_batch_follows_validation_freq():
    history = fit(model(), validation_every=3, validation_freq=2, epochs=2)
    assert history.validation_steps == [3, 9, 12]  # step 6 ends epoch 0, which does not validate


def test_max_steps_stops_across_epochs_and_closes_the_epoch():
    events = Events()
    history = fit(model(), max_steps=8, epochs=5, callbacks=[events])
    assert history.epoch == [0, 1]  # 6 + 2 batches; epoch 1 is closed early, validated
    assert events.events[-4:] == [("batch", 1), ("validation", 8), ("epoch_end", 1),
                                  ("train_end", ["accuracy", "loss", "val_accuracy", "val_loss"])]
    assert len(history.history["val_loss"]) == 2


def fake_clock(monkeypatch, seconds_per_read=1.0):
    """time.monotonic as StepControl reads it: each read is `seconds_per_read` later (no real timing)."""
    ticks = itertools.count()
    monkeypatch.setattr(step_control, "monotonic", lambda: next(ticks) * seconds_per_read)


def test_max_time_stops_at_a_batch_boundary_leaving_a_backup_the_same_fit_resumes(tmp_path, monkeypatch):
    uninterrupted = model()
    expected = fit(uninterrupted, epochs=3)
    fake_clock(monkeypatch)  # the clock is read once at the start, then once after every batch
    events, paused = Events(), model()
    with pytest.warns(UserWarning, match=r"max_time=8s ran out; training stopped after batch 2 of epoch 2 and a "
                                         r"backup was written"):
        history = fit(paused, epochs=3, max_time=8, callbacks=[BackupAndRestore(tmp_path), events])
    assert history.epoch == [0] and paused.training_state.batch == 2
    assert events.events[-2:] == [("batch", 1), ("train_end", ["accuracy", "loss", "val_accuracy", "val_loss"])]
    assert any(name.endswith(".json") for name in os.listdir(tmp_path))
    resumed = model()
    history = fit(resumed, epochs=3, max_time=datetime.timedelta(hours=1),
                  callbacks=[BackupAndRestore(tmp_path), Events()])
    for a, b in zip(uninterrupted.module.parameters(), resumed.module.parameters()):
        assert torch.equal(a, b)
    assert history.history == expected.history


def test_max_time_without_a_backup_still_stops_cleanly(monkeypatch):
    fake_clock(monkeypatch)
    with pytest.warns(UserWarning, match="No BackupAndRestore callback was given"):
        history = fit(model(), epochs=3, max_time=3.5)
    assert history.epoch == []


def test_model_checkpoint_saves_after_the_validation_at_its_batch(tmp_path):
    checkpoint = ModelCheckpoint(tmp_path / "s{batch:02d}-{val_loss:.4f}-{loss:.4f}.safetensors",
                                 save_freq=8, save_weights_only=True)
    history = fit(model(), validation_every=4, callbacks=[checkpoint])
    saved = sorted(os.listdir(tmp_path))
    assert len(saved) == 1 and saved[0].startswith("s02-")  # step 8: batch 2 of epoch 1, after its validation
    assert f"{history.validation_history['val_loss'][2]:.4f}" in saved[0]


@pytest.mark.parametrize("verbose", [1, 2])
def test_loggers_and_the_progress_output_record_every_validation_at_its_step(tmp_path, capsys, verbose):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    torch.manual_seed(1)
    history = model().fit(X, Y, batch_size=8, epochs=2, validation_data=VAL, validation_every=4, verbose=verbose,
                          callbacks=[JSONLinesLogger(tmp_path / "log.jsonl"), TensorBoard(tmp_path / "tb")])
    assert history.validation_steps == [4, 6, 8, 12]
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    validations = [line for line in lines if "step" in line]
    assert [(line["epoch"], line["step"]) for line in validations] == [(0, 4), (0, 6), (1, 8), (1, 12)]
    assert [line["val_loss"] for line in validations] == history.validation_history["val_loss"]
    assert [line["epoch"] for line in lines if "step" not in line] == [0, 1]  # the epoch lines, as before
    events = EventAccumulator(str(tmp_path / "tb" / "validation"))
    events.Reload()
    logged = [(e.step, e.value) for e in events.Scalars("evaluation_accuracy_vs_iterations")]
    assert logged == [(s, pytest.approx(v)) for s, v in zip(history.validation_steps,
                                                            history.validation_history["val_accuracy"])]
    out = capsys.readouterr().out
    for step, loss in zip(history.validation_steps, history.validation_history["val_loss"]):
        assert f"Step {step} - val_loss: {loss:.4f}" in out


def test_model_checkpoint_save_freq_must_follow_validations(tmp_path):
    with pytest.raises(ValueError, match=r"`save_freq=6` must be a multiple of fit's `validation_every=4`"):
        fit(model(), validation_every=4, callbacks=[ModelCheckpoint(tmp_path / "w.pt", save_freq=6)])


@pytest.mark.parametrize("arguments, error, message", [
    ({"validation_every": 0}, ValueError, r"`validation_every` must be a positive integer. Received: validation_every=0"),
    ({"validation_every": -2}, ValueError, r"Received: validation_every=-2"),
    ({"validation_every": 2.5}, ValueError, r"Received: validation_every=2.5"),
    ({"max_steps": 0}, ValueError, r"`max_steps` must be a positive integer. Received: max_steps=0"),
    ({"max_time": "1h"}, TypeError, r"`max_time` must be a number of seconds or a datetime.timedelta. "
                                    r"Received: max_time='1h'"),
    ({"max_time": -1}, ValueError, r"`max_time` must be a positive, finite number of seconds. Received: max_time=-1"),
    ({"max_time": math.nan}, ValueError, r"Received: max_time=nan"),
    ({"max_time": datetime.timedelta(0)}, ValueError, r"Received: max_time=datetime.timedelta\(0\)"),
    ({"validation_every": 3, "validation_data": None}, ValueError,
     r"`validation_every` needs validation data: pass `validation_data` or `validation_split`"),
])
def test_bad_step_arguments_are_refused_before_training(arguments, error, message):
    refused = model()
    before = [p.detach().clone() for p in refused.module.parameters()]
    with pytest.raises(error, match=message):
        fit(refused, **arguments)
    assert all(torch.equal(a, b) for a, b in zip(before, refused.module.parameters()))
