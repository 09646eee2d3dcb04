"""EarlyStopping driven by hand with scripted values, then once through fit."""

import math
import warnings

import pytest
import torch

import epochal
from epochal.callbacks import EarlyStopping


class FakeModel:
    def __init__(self):
        self.stop_training = False
        self.module = torch.nn.Linear(1, 1)


def drive(stopper, values, key="val_loss"):
    """Feed one value per epoch; return the epoch at which training was asked to stop (or None)."""
    model = FakeModel()
    stopper.set_model(model)
    stopper.on_train_begin()
    for epoch, value in enumerate(values):
        stopper.on_epoch_end(epoch, {key: value})
        if model.stop_training:
            return epoch
    return None


@pytest.mark.parametrize("values, patience, stop_epoch", [
    ([1.0, 0.9, 0.95], 0, 2),           # patience 0: the first non-improving epoch stops
    ([1.0, 0.9, 0.95, 0.96], 1, 2),     # patience 1: one epoch without improvement is enough
    ([1.0, 0.9, 0.95, 0.96], 2, 3),     # patience 2: the second non-improving epoch stops
    ([1.0, 0.9, 0.95, 0.8, 0.85, 0.86], 2, 5),  # improvement at epoch 3 resets wait
    ([1.0, 0.9, 0.8, 0.7], 0, None),    # always improving: never stops
])
def test_patience(values, patience, stop_epoch):
    assert drive(EarlyStopping(patience=patience), values) == stop_epoch


def test_improvement_is_strict_and_min_delta_is_absolute():
    assert drive(EarlyStopping(patience=0), [1.0, 1.0]) == 1
    assert drive(EarlyStopping(patience=0, min_delta=-0.1), [1.0, 0.95]) == 1  # needs < 0.9
    assert drive(EarlyStopping(patience=0, min_delta=0.1), [1.0, 0.89]) is None


def test_mode_auto_reads_accuracy_as_higher_is_better():
    assert EarlyStopping(monitor="val_accuracy").mode == "max"
    assert EarlyStopping(monitor="val_auc").mode == "max"
    assert EarlyStopping(monitor="val_mean_io_u").mode == "max"  # Keras's name for MeanIoU
    assert EarlyStopping(monitor="val_loss").mode == "min"
    assert drive(EarlyStopping(monitor="val_acc", patience=0), [0.5, 0.6, 0.55], key="val_acc") == 2


@pytest.mark.parametrize("options, values, keras", [
    # (stopped epoch, best epoch) as Keras 3's EarlyStopping gives them (keras_reference/issue18.py)
    (dict(patience=0, baseline=0.5), [0.6, 0.4, 0.45, 0.5], (2, 1)),
    (dict(patience=2, baseline=0.0), [5.0, 4.0, 3.0, 2.0, 1.0], (None, 4)),
    (dict(patience=2, baseline=1.0), [3.0, 2.0, 2.5, 2.4, 2.6, 2.7], (2, 1)),
    (dict(patience=1), [3.0, 2.0, 2.5, 2.4, 2.6], (2, 1)),
])
def test_baseline_only_decides_when_wait_resets_as_in_keras_3(options, values, keras):
    """An epoch that improves without beating the baseline stops nothing and is still the best so far."""
    stopper = EarlyStopping(restore_best_weights=True, **options)
    assert (drive(stopper, values), stopper.best_epoch) == keras
    assert stopper.best == min(values[: keras[0] + 1 if keras[0] is not None else None])


def test_start_from_epoch_ignores_early_epochs():
    assert drive(EarlyStopping(patience=0, start_from_epoch=2), [1.0, 2.0, 3.0, 2.5, 2.6]) == 4


def test_missing_monitor_warns_once_listing_available_keys_and_does_nothing():
    stopper = EarlyStopping(monitor="val_f1", patience=0)
    stopper.set_model(FakeModel())
    stopper.on_train_begin()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in range(3):
            stopper.on_epoch_end(epoch, {"loss": 1.0, "val_loss": 2.0})
    assert len(caught) == 1 and "loss, val_loss" in str(caught[0].message)
    assert not stopper.model.stop_training


def test_state_resets_on_train_begin_so_an_instance_can_be_reused():
    stopper = EarlyStopping(patience=0)
    drive(stopper, [1.0, 2.0])
    assert drive(stopper, [5.0, 4.0, 3.0]) is None and stopper.best == 3.0 and stopper.wait == 0
    assert not math.isinf(stopper.best)


def test_restore_best_weights_through_fit_when_stopping_early_and_when_epochs_run_out():
    torch.manual_seed(0)
    x, y = torch.randn(32, 3), torch.randn(32, 1)
    snapshots = []
    model = epochal.Model(torch.nn.Linear(3, 1), device="cpu")
    model.compile(optimizer="sgd", loss="mse")
    record = epochal.callbacks.LambdaCallback(
        on_epoch_end=lambda e, logs: snapshots.append({k: v.clone() for k, v in model.module.state_dict().items()}))
    # Monitor training loss with an impossible min_delta after epoch 1: epoch 1 stays best.
    stopper = EarlyStopping(monitor="loss", patience=2, restore_best_weights=True, min_delta=1e9, baseline=1e10)
    history = model.fit(x, y, epochs=6, batch_size=8, callbacks=[record, stopper], verbose=0)
    assert history.epoch == [0, 1, 2]  # epoch 0 improves on the baseline, 1 and 2 don't
    for key, value in model.module.state_dict().items():
        assert torch.equal(value, snapshots[0][key])

    # A baseline no epoch beats: every improving epoch still counts toward patience (Keras 3), and the
    # weights restored are the best epoch's, not the first's (before issue 18: stopped at 1, restored 0).
    snapshots.clear()
    stopper = EarlyStopping(monitor="loss", patience=2, restore_best_weights=True, baseline=0.0)
    history = model.fit(x, y, epochs=4, batch_size=8, callbacks=[record, stopper], verbose=0)
    best = min(range(len(history.epoch)), key=lambda e: history.history["loss"][e])
    assert history.epoch == [0, 1, 2, 3] and best == 3 == stopper.best_epoch
    for key, value in model.module.state_dict().items():
        assert torch.equal(value, snapshots[best][key])

    snapshots.clear()
    stopper = EarlyStopping(monitor="loss", patience=10, restore_best_weights=True)
    history = model.fit(x, y, epochs=3, batch_size=8, callbacks=[record, stopper], verbose=0)
    best = min(range(3), key=lambda e: history.history["loss"][e])
    for key, value in model.module.state_dict().items():
        assert torch.equal(value, snapshots[best][key])
