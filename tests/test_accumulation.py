"""gradient_accumulation_steps=k: k batches' gradients, one update — equal to one k-times-larger batch."""

import copy

import pytest
import torch

import epochal

LOSS = epochal.losses.SparseCategoricalCrossentropy(from_logits=True)


def make_module():
    return torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))


def trained(module, x, y, *, batch_size, optimizer="adam", **options):
    model = epochal.Model(copy.deepcopy(module), device="cpu")
    model.compile(optimizer=optimizer, loss=LOSS, **options)
    model.fit(x, y, batch_size=batch_size, epochs=2, shuffle=False, verbose=0)
    return model


@pytest.mark.parametrize("n", [32, 24], ids=["whole-groups", "partial-last-group"])
def test_accumulating_k_batches_equals_one_k_times_larger_batch(n):
    # n=24: batches of 8 make groups {0, 1} and {2}; the last group is applied as the mean of its
    # batch, i.e. exactly the last batch (8 samples) of a batch_size=16 run.
    x, y = torch.randn(n, 4), torch.randint(0, 3, (n,))
    module = make_module()
    accumulated = trained(module, x, y, batch_size=8, gradient_accumulation_steps=2)
    larger = trained(module, x, y, batch_size=16)
    for ours, theirs in zip(accumulated.module.parameters(), larger.module.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    assert accumulated.optimizer.state_dict()["state"][0]["step"] == larger.optimizer.state_dict()["state"][0]["step"]


def test_logged_batch_losses_are_each_batch_s_own_unscaled_loss():
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    module = make_module()
    losses = []
    model = epochal.Model(copy.deepcopy(module), device="cpu")
    model.compile(optimizer="sgd", loss=LOSS, gradient_accumulation_steps=2)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[
        epochal.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: losses.append(logs["loss"]))])
    # No update happens between the two batches of the group: both losses are the initial weights'.
    with torch.no_grad():
        expected = [float(torch.nn.functional.cross_entropy(module(x[i:i + 8]), y[i:i + 8])) for i in (0, 8)]
    assert losses == pytest.approx(expected, rel=1e-6)
    assert model.history.history["loss"] == pytest.approx([sum(expected) / 2], rel=1e-6)


def test_train_on_batch_applies_one_update_even_when_accumulating():
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    module = make_module()
    accumulating = epochal.Model(copy.deepcopy(module), device="cpu")
    accumulating.compile(optimizer="sgd", loss=LOSS, gradient_accumulation_steps=4)
    plain = epochal.Model(copy.deepcopy(module), device="cpu")
    plain.compile(optimizer="sgd", loss=LOSS)
    accumulating.train_on_batch(x, y)
    plain.train_on_batch(x, y)
    for ours, theirs in zip(accumulating.module.parameters(), plain.module.parameters()):
        torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_bad_accumulation_steps_are_errors(value):
    model = epochal.Model(torch.nn.Linear(4, 3), device="cpu")
    with pytest.raises(ValueError, match=r"`gradient_accumulation_steps` must be a positive integer"):
        model.compile(optimizer="sgd", loss="mse", gradient_accumulation_steps=value)
