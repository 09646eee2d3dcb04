"""validation_split holds out the tail, before shuffling, never shuffled; validation_data overrides it."""

import pytest
import torch

import epochal
from epochal.callbacks import Callback


class Recorder(torch.nn.Module):
    """Remembers the first input column of every training batch and of every validation batch."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(1, 1)
        self.train_seen, self.val_seen = [], []
        self.validating = False  # set by `Validating` between on_test_begin and on_test_end

    def forward(self, x):
        if self.training:
            self.train_seen.append(x[:, 0].tolist())
        elif self.validating:
            self.val_seen.append(x[:, 0].tolist())
        return self.linear(x)


class Validating(Callback):
    def on_test_begin(self, logs=None):
        self.model.module.validating = True

    def on_test_end(self, logs=None):
        self.model.module.validating = False


def ids(n):
    return torch.arange(n, dtype=torch.float32).unsqueeze(1)


def compiled(module):
    model = epochal.Model(module, device="cpu")
    model.compile(optimizer="sgd", loss="mse")
    return model


def test_split_trains_on_the_head_and_validates_on_the_tail_in_order():
    module = Recorder()
    model = compiled(module)
    model.fit(ids(10), torch.zeros(10), epochs=2, batch_size=3, validation_split=0.25, callbacks=[Validating()],
              verbose=0)
    trained = sorted(v for batch in module.train_seen for v in batch)
    # floor(10 * 0.75) = 7 training samples; the tail 7, 8, 9 is never trained on.
    assert trained == sorted(list(range(7)) * 2)
    assert module.val_seen == [[7.0, 8.0, 9.0], [7.0, 8.0, 9.0]]


def test_val_loss_equals_evaluate_on_the_tail():
    torch.manual_seed(0)
    x, y = torch.randn(20, 1), torch.randn(20, 1)
    model = compiled(torch.nn.Linear(1, 1))
    history = model.fit(x, y, epochs=1, batch_size=4, validation_split=0.3, verbose=0)
    tail = model.evaluate(x[14:], y[14:], batch_size=5, verbose=0)
    assert history.history["val_loss"][0] == pytest.approx(tail["loss"], rel=1e-6)
    assert history.params["samples"] == 14


def test_validation_data_overrides_validation_split():
    module = Recorder()
    model = compiled(module)
    model.fit(ids(6), torch.zeros(6), epochs=1, batch_size=6, validation_split=0.5, shuffle=False,
              validation_data=(ids(3) + 100, torch.zeros(3)), callbacks=[Validating()], verbose=0)
    assert module.train_seen == [[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]]
    assert module.val_seen == [[100.0, 101.0, 102.0]]


def test_validation_data_may_carry_sample_weights():
    x, y = torch.zeros(4, 1), torch.tensor([[0.0], [0.0], [2.0], [2.0]])
    module = torch.nn.Linear(1, 1)
    torch.nn.init.zeros_(module.weight), torch.nn.init.zeros_(module.bias)
    model = epochal.Model(module, device="cpu")
    model.compile(optimizer=lambda params: torch.optim.SGD(params, lr=0.0), loss="mse")
    history = model.fit(x, y, epochs=1, verbose=0, validation_data=(x, y, torch.tensor([1.0, 1.0, 0.0, 0.0])))
    # Squared errors 0, 0, 4, 4; weights 1, 1, 0, 0: the weighted mean over 4 samples is 0.
    assert history.history["val_loss"] == [0.0]


@pytest.mark.parametrize("freq, validated", [(2, [1, 3]), ([1, 4], [0, 3])])
def test_validation_freq_int_and_list(freq, validated):
    epochs_with_val = []

    class Spy(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if "val_loss" in logs:
                epochs_with_val.append(epoch)

    model = compiled(torch.nn.Linear(1, 1))
    history = model.fit(ids(6), torch.zeros(6), epochs=4, validation_split=0.5, validation_freq=freq,
                        callbacks=[Spy()], verbose=0)
    assert epochs_with_val == validated
    assert len(history.history["val_loss"]) == len(validated)


def test_validation_batch_size_and_validation_steps():
    sizes = []

    class Spy(Callback):
        def on_test_batch_begin(self, batch, logs=None):
            sizes.append(batch)

    model = compiled(torch.nn.Linear(1, 1))
    model.fit(ids(20), torch.zeros(20), epochs=1, batch_size=2, validation_split=0.5,
              validation_batch_size=4, callbacks=[Spy()], verbose=0)
    assert sizes == [0, 1, 2]  # 10 held-out samples in batches of 4: 4, 4, 2
    sizes.clear()
    model.fit(ids(20), torch.zeros(20), epochs=1, batch_size=2, validation_split=0.5,
              validation_steps=2, callbacks=[Spy()], verbose=0)
    assert sizes == [0, 1]
