"""The built-in callbacks through a real `fit`, alone and all together."""

import csv
import json

import pytest
import torch

import epochal
from epochal import schedules
from epochal.callbacks import (
    CSVLogger,
    EarlyStopping,
    JSONLinesLogger,
    LearningRateScheduler,
    ModelCheckpoint,
    NonFiniteLossError,
    ReduceLROnPlateau,
    TensorBoard,
    TerminateOnNaN,
)
from epochal.saving import load_checkpoint, load_weights

X = torch.linspace(-1, 1, 48).reshape(16, 3)
Y = X.sum(dim=1, keepdim=True)


def _model(optimizer="sgd"):
    torch.manual_seed(0)
    model = epochal.Model(torch.nn.Linear(3, 1), device="cpu")
    model.compile(optimizer=optimizer, loss="mse")
    return model


def _fit(model, **kwargs):
    kwargs = {"batch_size": 4, "epochs": 3, "verbose": 0, "shuffle": False, **kwargs}
    return model.fit(X, Y, **kwargs)


def test_checkpoint_resume_continues_exactly(tmp_path):
    straight = _model("adam")
    _fit(straight, epochs=4)

    first = _model("adam")
    _fit(first, epochs=2, callbacks=[ModelCheckpoint(tmp_path / "last.pt", monitor="loss")])
    resumed = _model("adam")
    metadata = load_checkpoint(tmp_path / "last.pt", resumed.module, resumed.optimizer)
    assert metadata["epoch"] == 1 and metadata["batch"] is None
    _fit(resumed, epochs=4, initial_epoch=metadata["epoch"] + 1)
    for a, b in zip(straight.module.parameters(), resumed.module.parameters()):
        torch.testing.assert_close(a, b)


def test_checkpoint_best_weights_by_validation(tmp_path):
    model = _model()
    history = _fit(model, epochs=4, validation_split=0.25, callbacks=[
        ModelCheckpoint(tmp_path / "w-{epoch:02d}-{val_loss:.3f}.safetensors", save_best_only=True,
                        save_weights_only=True)])
    best = min(range(4), key=lambda e: history.history["val_loss"][e])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[-1] == f"w-{best + 1:02d}-{history.history['val_loss'][best]:.3f}.safetensors"
    load_weights(model.module, tmp_path / names[-1])


def test_schedule_shows_in_history_as_learning_rate():
    model = _model()
    history = _fit(model, epochs=4, callbacks=[LearningRateScheduler(schedules.step_decay(0.1, 2, 0.5))])
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.1, 0.05, 0.05])


def test_per_batch_schedule_and_torch_scheduler():
    model = _model()
    history = _fit(model, epochs=2, callbacks=[LearningRateScheduler(lambda step: 0.01 * (step + 1), per="batch")])
    assert history.history["learning_rate"] == pytest.approx([0.04, 0.08])  # the epoch's last batch's rate

    model = _model()
    step_lr = torch.optim.lr_scheduler.StepLR(model.optimizer, step_size=1, gamma=0.1)
    history = _fit(model, epochs=3, callbacks=[LearningRateScheduler(step_lr)])
    assert history.history["learning_rate"] == pytest.approx([0.01, 0.001, 0.0001])


def test_reduce_lr_on_plateau_in_fit():
    model = _model()
    history = _fit(model, epochs=4, callbacks=[
        ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=100.0)])
    # Recorded before the callback acts at each epoch's end: the first epoch improves on inf.
    assert history.history["learning_rate"] == pytest.approx([0.01, 0.01, 0.005, 0.0025])


def test_csv_logger_matches_history_with_late_validation_keys(tmp_path):
    model = _model()
    history = _fit(model, epochs=4, validation_split=0.25, validation_freq=2,
                   callbacks=[CSVLogger(tmp_path / "log.csv")])
    with open(tmp_path / "log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["loss"]) for r in rows] == history.history["loss"]
    assert [r["val_loss"] for r in rows][::2] == ["NA", "NA"]
    assert [float(r["val_loss"]) for r in rows[1::2]] == history.history["val_loss"]


def test_json_lines_per_batch(tmp_path):
    model = _model()
    history = _fit(model, epochs=2, callbacks=[JSONLinesLogger(tmp_path / "log.jsonl", per_batch=True)])
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [("batch" in r, r["epoch"]) for r in records] == [(True, 0)] * 4 + [(False, 0)] + [(True, 1)] * 4 + [
        (False, 1)]
    assert [r["loss"] for r in records if "batch" not in r] == history.history["loss"]


def test_tensorboard_in_fit(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    history = _fit(_model(), epochs=2, validation_split=0.25, callbacks=[TensorBoard(tmp_path, update_freq=2)])
    for run, key in (("train", "loss"), ("validation", "val_loss")):
        events = EventAccumulator(str(tmp_path / run))
        events.Reload()
        assert [e.value for e in events.Scalars("epoch_loss")] == pytest.approx(history.history[key])
    assert len(events.Scalars("epoch_loss")) == 2


def _with_nan_in_batch(batch):
    """Inputs that give a NaN loss in `batch` (fit's data check is turned off to let them through)."""
    x = X.clone()
    x[batch * 4] = float("nan")
    return x


def test_terminate_on_nan_stops_at_the_bad_batch():
    model = _model()
    guard = TerminateOnNaN()
    history = model.fit(_with_nan_in_batch(2), Y, batch_size=4, epochs=3, verbose=0, shuffle=False,
                        callbacks=[guard], check_finite=False)
    assert (guard.stopped_epoch, guard.stopped_batch) == (0, 2)
    assert history.epoch == [0]


def test_terminate_on_nan_can_raise():
    model = _model()
    with pytest.raises(NonFiniteLossError, match="epoch 0 .*batch 1"):
        model.fit(_with_nan_in_batch(1), Y, batch_size=4, epochs=2, verbose=0, shuffle=False,
                  callbacks=[TerminateOnNaN(raise_error=True)], check_finite=False)


def test_all_together(tmp_path):
    model = _model()
    callbacks = [
        TerminateOnNaN(),
        LearningRateScheduler(schedules.cosine_decay(0.05, 5)),
        ReduceLROnPlateau(patience=1),
        EarlyStopping(patience=2, restore_best_weights=True),
        ModelCheckpoint(tmp_path / "ckpt" / "{epoch}.pt"),
        CSVLogger(tmp_path / "log.csv"),
        JSONLinesLogger(tmp_path / "log.jsonl"),
        TensorBoard(tmp_path / "tb"),
    ]
    history = _fit(model, epochs=5, validation_split=0.25, callbacks=callbacks)
    assert list(history.history) == ["loss", "val_loss", "learning_rate"]
    assert len(history.epoch) == 5
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [f"{e}.pt" for e in range(1, 6)]
    assert len((tmp_path / "log.csv").read_text().splitlines()) == 6
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 5
    assert {p.name for p in (tmp_path / "tb").iterdir()} == {"train", "validation"}
