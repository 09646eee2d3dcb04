"""fit_dataset / fit(x=dataset): DataLoaders, lists and generators, with TF.js's batches_per_epoch rules."""

import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import epochal
from epochal.callbacks import Callback


def batches(n, size=2, start=0):
    """`n` batches of `size` samples whose x is the running sample index."""
    return [(torch.arange(start + i * size, start + (i + 1) * size, dtype=torch.float32).unsqueeze(1),
             torch.zeros(size, 1)) for i in range(n)]


class Recorder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(1, 1)
        self.seen = []

    def forward(self, x):
        if self.training:
            self.seen.append(x[:, 0].tolist())
        return self.linear(x)


def compiled():
    model = epochal.Model(Recorder(), device="cpu")
    model.compile(optimizer="sgd", loss="mse")
    return model


def test_a_dataloader_gives_a_fresh_pass_each_epoch():
    model = compiled()
    loader = DataLoader(TensorDataset(torch.arange(5.0).unsqueeze(1), torch.zeros(5, 1)), batch_size=2)
    history = model.fit_dataset(loader, epochs=2, verbose=0)
    assert model.module.seen == [[0.0, 1.0], [2.0, 3.0], [4.0]] * 2
    assert history.epoch == [0, 1] and history.params["steps"] == 3


def test_fit_with_a_dataset_as_x_does_the_same():
    model = compiled()
    history = model.fit(batches(2), epochs=2, verbose=0)
    assert len(model.module.seen) == 4 and history.epoch == [0, 1]


def test_epochs_is_required():
    with pytest.raises(TypeError, match="epochs"):
        compiled().fit_dataset(batches(2), verbose=0)


def test_batches_per_epoch_shares_one_iterator_across_epochs():
    model = compiled()
    history = model.fit_dataset(iter(batches(6)), epochs=3, batches_per_epoch=2, verbose=0)
    assert model.module.seen == [b[0][:, 0].tolist() for b in batches(6)]
    assert history.epoch == [0, 1, 2]


@pytest.mark.parametrize("available, completed", [(5, [0, 1, 2]), (4, [0, 1])], ids=["mid-epoch", "at-boundary"])
def test_a_stream_that_runs_dry_warns_once_and_stops_after_closing_the_epoch(available, completed):
    epochs_ended = []

    class Spy(Callback):
        def on_epoch_end(self, epoch, logs=None):
            epochs_ended.append(epoch)

    model = compiled()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit_dataset(iter(batches(available)), epochs=10, batches_per_epoch=2, callbacks=[Spy()],
                                    verbose=0)
    assert epochs_ended == completed and history.epoch == completed  # no empty epoch is opened
    assert len(model.module.seen) == available
    assert len([w for w in caught if "ran out of data" in str(w.message)]) == 1


def test_a_generator_without_batches_per_epoch_is_exhausted_after_one_epoch_and_warns_once():
    def generate():
        yield from batches(3)

    model = compiled()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit_dataset(generate(), epochs=5, verbose=0)
    assert history.epoch == [0] and len(model.module.seen) == 3
    assert len([w for w in caught if "ran out of data" in str(w.message)]) == 1


def test_elements_may_carry_sample_weights():
    module = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(module.weight)
    model = epochal.Model(module, device="cpu")
    model.compile(optimizer=lambda params: torch.optim.SGD(params, lr=0.0), loss="mse")
    data = [(torch.ones(2, 1), torch.tensor([[1.0], [2.0]]), torch.tensor([4.0, 0.0]))]
    assert model.fit_dataset(data, epochs=1, verbose=0).history["loss"] == [pytest.approx(2.0)]


@pytest.mark.parametrize("validation_data", [
    batches(3, start=100),
    (torch.arange(100.0, 106.0).unsqueeze(1), torch.zeros(6, 1)),
], ids=["dataset", "arrays"])
def test_validation_data_as_a_dataset_or_arrays(validation_data):
    validated = []

    class Spy(Callback):
        def on_test_batch_begin(self, batch, logs=None):
            validated.append(batch)

    model = compiled()
    history = model.fit_dataset(batches(2), epochs=2, validation_data=validation_data, validation_batches=2,
                                validation_batch_size=2, callbacks=[Spy()], verbose=0)
    assert validated == [0, 1, 0, 1]  # two batches, a fresh pass each epoch
    assert len(history.history["val_loss"]) == 2


def test_val_loss_from_a_validation_dataset_is_the_per_sample_mean():
    module = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(module.weight)
    model = epochal.Model(module, device="cpu")
    model.compile(optimizer=lambda params: torch.optim.SGD(params, lr=0.0), loss="mse")
    val = [(torch.ones(3, 1), torch.full((3, 1), 1.0)), (torch.ones(1, 1), torch.full((1, 1), 3.0))]
    history = model.fit_dataset(batches(1), epochs=1, validation_data=val, verbose=0)
    assert history.history["val_loss"] == [pytest.approx((3 * 1 + 9) / 4)]


def test_validation_split_is_refused_for_datasets():
    model = compiled()
    with pytest.raises(ValueError, match="`validation_split` is only supported for arrays"):
        model.fit(batches(2), validation_split=0.2, verbose=0)
    with pytest.raises(ValueError, match="`validation_split` is only supported for arrays"):
        model.fit_dataset(batches(2), epochs=1, validation_split=0.2, verbose=0)
    assert model.module.seen == []


class DictInput(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)

    def forward(self, features):
        return self.linear(features)


@pytest.mark.parametrize("data, module", [
    ([(np.ones((3, 2), "float32"), np.zeros((3, 1), "float32"))] * 2, torch.nn.Linear(2, 1)),
    ([({"features": torch.ones(3, 2)}, torch.zeros(3, 1))] * 2, DictInput()),
], ids=["numpy-batches", "dict-x-batches"])
def test_a_list_of_batches_of_numpy_arrays_or_dicts_is_a_dataset(data, module):
    model = epochal.Model(module, device="cpu")
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(data, epochs=2, verbose=0)
    assert history.params["steps"] == 2 and history.epoch == [0, 1]


def test_a_one_shot_validation_generator_used_up_warns_once_instead_of_silently_dropping_val_logs():
    def generate():
        yield from batches(2, start=100)

    model = compiled()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(torch.ones(4, 1), torch.zeros(4, 1), epochs=3, validation_data=generate(), verbose=0)
    assert len(history.history["val_loss"]) == 1
    assert len([w for w in caught if "`validation_data` yielded no batch at epoch 1" in str(w.message)]) == 1


def test_fit_on_a_dataset_refuses_batch_size_and_sample_weight():
    model = epochal.Model(torch.nn.Linear(2, 1), device="cpu")
    model.compile(optimizer="sgd", loss="mse")
    batches = [(torch.randn(4, 2), torch.randn(4, 1))]
    with pytest.raises(ValueError, match=r"`batch_size` must be None when `x` is a dataset.*batch_size=8"):
        model.fit(batches, batch_size=8, verbose=0)
    with pytest.raises(ValueError, match=r"`sample_weight` must be None when `x` is a dataset"):
        model.fit(batches, sample_weight=torch.ones(4), verbose=0)
