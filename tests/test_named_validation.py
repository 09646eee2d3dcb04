"""Several named validation sets: `validation_data={"clean": ..., "noisy": ...}` logs `val_clean_*` and
`val_noisy_*`, each the exact mean over its own set, and every monitor may name any of them."""

import doctest
import os
import warnings

import pytest
import torch

import epochal
from epochal.analysis.diagnosis import diagnose
from epochal.callbacks import EarlyStopping, ModelCheckpoint, ReduceLROnPlateau
from epochal.callbacks.history import History

LOSS = epochal.losses.SparseCategoricalCrossentropy(from_logits=True)


def data(samples, seed):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, 4, generator=generator)
    return x, (x[:, 0] > x[:, 1]).long()


def model():
    torch.manual_seed(0)
    model = epochal.Model(torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)),
                          device="cpu")
    model.compile(optimizer="adam", loss=LOSS, metrics=["accuracy"])
    return model


X, Y = data(40, 1)
CLEAN = data(11, 2)
NOISY = (CLEAN[0] + 2 * torch.randn(11, 4, generator=torch.Generator().manual_seed(3)), CLEAN[1])


def test_each_set_logs_its_own_exact_means_under_its_name():
    trained = model()
    history = trained.fit(X, Y, epochs=2, batch_size=8, validation_data={"clean": CLEAN, "noisy": NOISY},
                          validation_batch_size=4, verbose=0)
    assert list(history.history) == ["loss", "accuracy", "val_clean_loss", "val_clean_accuracy",
                                     "val_noisy_loss", "val_noisy_accuracy"]
    assert history.params["metrics"] == list(history.history)
    for name, (x, y) in (("clean", CLEAN), ("noisy", NOISY)):  # the last epoch's values are the final weights'
        expected = trained.evaluate(x, y, batch_size=4, verbose=0)
        assert history.history[f"val_{name}_loss"][-1] == pytest.approx(expected["loss"], rel=1e-6)
        assert history.history[f"val_{name}_accuracy"][-1] == pytest.approx(expected["accuracy"], rel=1e-6)
    assert history.history["val_noisy_loss"] != history.history["val_clean_loss"]


def test_named_sets_may_be_datasets_too_in_fit_dataset():
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=8)
    noisy = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*NOISY), batch_size=4)
    history = model().fit_dataset(loader, epochs=1, validation_data={"clean": CLEAN, "noisy": noisy}, verbose=0)
    assert {"val_clean_loss", "val_noisy_accuracy"} <= set(history.history)


def test_monitors_may_name_any_set(tmp_path):
    stopper = EarlyStopping(monitor="val_noisy_loss", patience=0, min_delta=10.0)  # no epoch improves by 10
    checkpoint = ModelCheckpoint(tmp_path / "{epoch}-{val_clean_accuracy:.2f}.safetensors",
                                 monitor="val_clean_accuracy", save_best_only=True, save_weights_only=True)
    plateau = ReduceLROnPlateau(monitor="val_clean_loss", patience=0, min_delta=10.0, factor=0.5)
    trained = model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a monitor that did not find its key would warn
        history = trained.fit(X, Y, epochs=5, batch_size=8, validation_data={"clean": CLEAN, "noisy": NOISY},
                              callbacks=[stopper, checkpoint, plateau], verbose=0)
    assert history.epoch == [0, 1]  # the first epoch sets the best, the second does not beat it by 10
    assert checkpoint.mode == "max" and len(os.listdir(tmp_path)) >= 1
    assert trained.optimizer.param_groups[0]["lr"] == pytest.approx(0.0005)


def test_the_diagnosis_reads_a_named_set():
    history = History()
    history.epoch = [0, 1, 2, 3]
    history.history = {"loss": [1.0, 0.5, 0.3, 0.2], "val_clean_loss": [1.0, 0.6, 0.5, 0.55],
                        "val_noisy_loss": [1.2, 1.1, 1.3, 1.5]}
    clean = diagnose(history, "val_clean_loss")
    assert (clean.best_epoch, clean.onset_epoch, clean.has_validation) == (2, 3, True)
    assert [gap.val for gap in clean.gaps_at_best] == [0.5]  # train against the monitored set
    default = diagnose(history)  # val_loss is absent: the first set stands in, and the report says so
    assert default.monitor == "val_clean_loss" and "reading `val_clean_loss`" in str(default)
    assert diagnose(history, "val_noisy_loss").best_epoch == 1


@pytest.mark.parametrize("validation_data, error, message", [
    ({}, ValueError, r"`validation_data` as a dict must name at least one validation set"),
    ({"": CLEAN}, ValueError, r"Each name in `validation_data` must be a string .* Received: ''"),
    ({"a b": CLEAN}, ValueError, r"Received: 'a b'"),
    ({1: CLEAN}, ValueError, r"Received: 1"),
    ({"clean": CLEAN[0]}, ValueError, r"`validation_data\['clean'\]` must be a tuple .*Received: a Tensor"),
    ({"clean": (CLEAN[0][:, :3], CLEAN[1])}, ValueError,
     r"`validation_data\['clean'\]`'s x has samples of shape \(3,\), but the training `x` has \(4,\)"),
    ({"clean": (CLEAN[0], torch.full((11,), 5))}, ValueError, r"validation_data\['clean'\]"),
])
def test_bad_named_sets_are_refused_before_training(validation_data, error, message):
    refused = model()
    before = [p.detach().clone() for p in refused.module.parameters()]
    with pytest.raises(error, match=message):
        refused.fit(X, Y, epochs=1, batch_size=8, validation_data=validation_data, verbose=0)
    assert all(torch.equal(a, b) for a, b in zip(before, refused.module.parameters()))


def test_docstring_example_runs():
    import epochal.data.validation_sets

    assert doctest.testmod(epochal.data.validation_sets).failed == 0
