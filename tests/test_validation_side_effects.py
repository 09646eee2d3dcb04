"""Validation is a pure read: eval mode, no grad, and no weight, buffer, optimizer or RNG change."""

import copy

import torch

import epochal
from epochal.callbacks import Callback


def net():
    return torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.BatchNorm1d(8), torch.nn.Dropout(0.5),
                               torch.nn.Linear(8, 1))


def state_of(model):
    return copy.deepcopy(model.module.state_dict()), copy.deepcopy(model.optimizer.state_dict())


def same(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return a == b


def test_a_run_with_validation_ends_with_the_same_weights_buffers_and_optimizer_as_one_without():
    x, y = torch.randn(24, 3), torch.randn(24, 1)
    x_val, y_val = torch.randn(10, 3), torch.randn(10, 1)
    states = []
    for validation_data in (None, (x_val, y_val)):
        torch.manual_seed(7)
        model = epochal.Model(net(), device="cpu")
        model.compile(optimizer="adam", loss="mse")
        model.fit(x, y, epochs=3, batch_size=5, validation_data=validation_data, verbose=0)  # shuffled, dropout
        states.append((state_of(model), torch.get_rng_state()))
    assert same(states[0][0], states[1][0])
    assert torch.equal(states[0][1], states[1][1])  # the RNG stream is untouched by validation


def test_evaluate_changes_no_state_and_consumes_no_randomness():
    model = epochal.Model(net(), device="cpu")
    model.compile(optimizer="adam", loss="mse")
    model.fit(torch.randn(16, 3), torch.randn(16, 1), epochs=1, batch_size=4, verbose=0)
    x, y = torch.randn(9, 3), torch.randn(9, 1)
    before, rng = state_of(model), torch.get_rng_state()
    model.module.train()
    model.evaluate(x, y, batch_size=4, verbose=0)
    model.predict(x, batch_size=4, verbose=0)
    assert same(before, state_of(model))
    assert torch.equal(rng, torch.get_rng_state())
    assert model.module.training  # the module's mode is restored


def test_validation_runs_in_eval_mode_without_grad_on_the_updated_weights():
    calls = []  # (phase, training, grad enabled, weight) for every forward

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(1, 1)
            self.phase = "train"

        def forward(self, x):
            calls.append((self.phase, self.training, torch.is_grad_enabled(), self.linear.weight.item()))
            return self.linear(x)

    class Phases(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.model.module.phase = "train"

        def on_test_begin(self, logs=None):
            self.model.module.phase = "val"

    model = epochal.Model(Spy(), device="cpu")
    model.compile(optimizer="sgd", loss="mse")
    model.fit(torch.ones(4, 1), torch.full((4,), 3.0), epochs=2, batch_size=2, shuffle=False,
              validation_data=(torch.ones(2, 1), torch.zeros(2, 1)), callbacks=[Phases()], verbose=0)
    train = [c for c in calls if c[0] == "train" and c[1]]
    val = [c for c in calls if c[0] == "val"]
    assert len(train) == 4 and all(grad for _, _, grad, _ in train)
    assert len(val) == 2 and not any(training or grad for _, training, grad, _ in val)
    # Each validation sees the weights after its epoch's last update, not those it started with.
    assert val[0][3] != train[1][3] and val[0][3] == train[2][3]
