"""The module is called exactly as a hand-written loop calls it (SPEC "The module's calls", issue 18):
one training-mode forward per training batch, one eval-mode forward per validation, evaluate or predict
batch, and no probe before `on_train_begin`; the first epoch's order is drawn after `on_train_begin`."""

import pytest
import torch

import epochal
from epochal.callbacks import Callback


class Counting(torch.nn.Module):
    """Records (training mode, the row ids it was given) for every call; input column 0 holds the row id."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)
        self.calls = []

    def forward(self, x):
        self.calls.append((self.training, x[:, 0].long().tolist()))
        return self.linear(x)


def rows(n):
    """Inputs whose first column is the row id, and targets for them."""
    ids = torch.arange(float(n)).unsqueeze(1)
    return torch.cat([ids, torch.ones(n, 1)], 1), torch.zeros(n, 1)


def compiled(module):
    model = epochal.Model(module, device="cpu")
    model.compile(optimizer="sgd", loss="mse")
    return model


def test_fit_with_a_validation_split_calls_the_module_once_per_batch_and_validation_sees_only_its_rows():
    module = Counting()
    x, y = rows(10)
    compiled(module).fit(x, y, batch_size=4, epochs=2, shuffle=False, validation_split=0.2, verbose=0)
    epoch = [(True, [0, 1, 2, 3]), (True, [4, 5, 6, 7]), (False, [8, 9])]
    assert module.calls == 2 * epoch  # before issue 18: one more eval-mode call on rows 0-3 first


def test_a_stream_calls_the_module_once_per_batch():
    module = Counting()
    x, y = rows(6)
    stream = [(x[i:i + 3], y[i:i + 3]) for i in (0, 3)]
    compiled(module).fit_dataset(stream, epochs=1, validation_data=(x[:2], y[:2]), verbose=0)
    assert module.calls == [(True, [0, 1, 2]), (True, [3, 4, 5]), (False, [0, 1])]


def test_evaluate_and_predict_call_the_module_once_per_batch():
    module = Counting()
    model = compiled(module)
    x, y = rows(5)
    model.evaluate(x, y, batch_size=3, verbose=0)
    model.predict(x, batch_size=3, verbose=0)
    assert module.calls == 2 * [(False, [0, 1, 2]), (False, [3, 4])]


def test_a_target_that_cannot_match_fails_in_the_first_real_step_before_any_update():
    module = Counting()
    model = compiled(module)
    before = {name: value.clone() for name, value in module.state_dict().items()}
    x, _ = rows(6)
    with pytest.raises(ValueError, match=r"`y` has shape \(4, 3\) but the model's output has shape \(4, 1\)"):
        model.fit(x, torch.zeros(6, 3), batch_size=4, shuffle=False, verbose=0)
    assert module.calls == [(True, [0, 1, 2, 3])]  # the training forward itself, not an eval-mode probe
    assert all(torch.equal(value, before[name]) for name, value in module.state_dict().items())


class SeedOnTrainBegin(Callback):
    def on_train_begin(self, logs=None):
        torch.manual_seed(5)


def _first_epoch_order(seed, callbacks):
    module = Counting()
    x, y = rows(8)
    torch.manual_seed(seed)
    compiled(module).fit(x, y, batch_size=8, epochs=1, callbacks=callbacks, verbose=0)
    return module.calls[0][1]


def test_a_callback_seeding_in_on_train_begin_decides_the_first_epochs_order():
    assert _first_epoch_order(1, []) != _first_epoch_order(2, [])  # the seed before fit matters without it
    assert _first_epoch_order(1, [SeedOnTrainBegin()]) == _first_epoch_order(2, [SeedOnTrainBegin()])
