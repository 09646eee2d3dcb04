"""Array inputs: every kind SPEC lists reaches the module as the same tensors, batched in order."""

import numpy as np
import pandas as pd
import pytest
import torch

import epochal
from epochal.callbacks import Callback


class Recorder(torch.nn.Module):
    """A linear layer that remembers the first input column of every training batch it sees."""

    def __init__(self, features=1, outputs=1):
        super().__init__()
        self.linear = torch.nn.Linear(features, outputs)
        self.seen = []

    def forward(self, x):
        if self.training:
            self.seen.append(x[:, 0].detach().clone())
        return self.linear(x)


def ids(n):
    """Inputs whose first column is the sample's index, so batches reveal which samples they hold."""
    return torch.arange(n, dtype=torch.float32).unsqueeze(1)


def fitted(module, x, y, **kwargs):
    model = epochal.Model(module, device="cpu")
    model.compile(optimizer="sgd", loss="mse")
    kwargs.setdefault("verbose", 0)
    return model, model.fit(x, y, **kwargs)


@pytest.mark.parametrize("convert", [
    lambda a: a,
    torch.from_numpy,
    lambda a: pd.DataFrame(a) if a.ndim == 2 else pd.Series(a),
    lambda a: a.tolist(),
], ids=["numpy", "torch", "pandas", "list"])
def test_every_array_kind_gives_the_same_training(convert):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(10, 3)).astype("float32"), rng.normal(size=(10, 1)).astype("float32")
    results = []
    for x_in, y_in in [(x, y), (convert(x), convert(y))]:
        torch.manual_seed(1)
        _, history = fitted(torch.nn.Linear(3, 1), x_in, y_in, epochs=2, batch_size=4)
        results.append(history.history["loss"])
    assert results[0] == pytest.approx(results[1], rel=1e-6)


def test_a_1d_y_is_read_as_n_by_1_for_an_n_by_1_output_never_broadcast():
    x, y = torch.randn(8, 2), torch.randn(8)
    module = torch.nn.Linear(2, 1)
    with torch.no_grad():
        expected = torch.mean((module(x) - y.unsqueeze(1)) ** 2).item()
    # Were y broadcast against the (8, 1) output, the loss would be a mean over an (8, 8) grid.
    model, history = fitted(module, x, y, epochs=1, batch_size=8, shuffle=False)
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-6)


def test_pandas_series_as_1d_y():
    x = pd.DataFrame({"a": np.arange(6.0), "b": np.ones(6)})
    y = pd.Series(np.arange(6.0))
    model, history = fitted(torch.nn.Linear(2, 1), x, y, epochs=1, batch_size=3)
    assert len(history.history["loss"]) == 1


def test_batches_are_contiguous_and_the_last_is_short_without_shuffle():
    module = Recorder()
    fitted(module, ids(10), torch.zeros(10), epochs=1, batch_size=4, shuffle=False)
    assert [b.tolist() for b in module.seen] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_shuffle_visits_every_sample_once_per_epoch_and_reshuffles_each_epoch():
    module = Recorder()
    fitted(module, ids(10), torch.zeros(10), epochs=3, batch_size=4)
    assert [len(b) for b in module.seen] == [4, 4, 2] * 3
    epochs = [torch.cat(module.seen[i:i + 3]).tolist() for i in range(0, 9, 3)]
    assert all(sorted(order) == list(range(10)) for order in epochs)
    assert len({tuple(order) for order in epochs}) == 3


def test_torch_manual_seed_makes_shuffled_runs_repeatable():
    orders = []
    for _ in range(2):
        torch.manual_seed(42)
        module = Recorder()
        fitted(module, ids(12), torch.zeros(12), epochs=2, batch_size=5)
        orders.append([b.tolist() for b in module.seen])
    assert orders[0] == orders[1]


@pytest.mark.parametrize("initial_epoch, epochs, expected", [(0, 3, [0, 1, 2]), (2, 5, [2, 3, 4])])
def test_epochs_is_the_last_index_plus_one(initial_epoch, epochs, expected):
    _, history = fitted(torch.nn.Linear(1, 1), ids(4), torch.zeros(4), epochs=epochs, initial_epoch=initial_epoch)
    assert history.epoch == expected


def test_initial_epoch_at_or_past_epochs_trains_nothing_but_opens_and_closes_training():
    events = []

    class Spy(Callback):
        def on_train_begin(self, logs=None):
            events.append("train_begin")

        def on_epoch_begin(self, epoch, logs=None):
            events.append("epoch_begin")

        def on_train_end(self, logs=None):
            events.append("train_end")

    module = Recorder()
    before = [p.clone() for p in module.parameters()]
    _, history = fitted(module, ids(4), torch.zeros(4), epochs=3, initial_epoch=3, callbacks=[Spy()])
    assert events == ["train_begin", "train_end"]
    assert history.epoch == [] and history.history == {}
    assert all(torch.equal(a, b) for a, b in zip(before, module.parameters()))


def test_steps_per_epoch_limits_the_batches_of_each_epoch_and_the_next_epoch_continues():
    module = Recorder()
    _, history = fitted(module, ids(10), torch.zeros(10), epochs=3, batch_size=3, steps_per_epoch=2, shuffle=False)
    # Keras: epoch 1 takes the next batches and ends where the data does; epoch 2 starts a new pass.
    assert [b.tolist() for b in module.seen] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9], [0, 1, 2], [3, 4, 5]]
    assert history.params["steps"] == 2


def test_history_params_describe_the_run():
    _, history = fitted(torch.nn.Linear(1, 1), ids(10), torch.zeros(10), epochs=2, batch_size=4,
                        validation_split=0.2)
    params = history.params
    assert (params["epochs"], params["steps"], params["batch_size"], params["samples"]) == (2, 2, 4, 8)
    assert (params["initial_epoch"], params["verbose"], params["do_validation"]) == (0, 0, True)
    assert params["metrics"] == ["loss", "val_loss"]

