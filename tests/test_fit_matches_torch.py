"""`fit` is exactly a hand-written PyTorch loop: same batches, same updates, same final weights."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

import epochal


def make_mlp() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Dropout(0.2), torch.nn.Linear(12, 3))


def hand_written_fit(module, x, y, *, epochs, batch_size, shuffle, lr):
    """The 15-line loop every PyTorch user writes."""
    optimizer = torch.optim.SGD(module.parameters(), lr=lr)
    n = x.shape[0]
    epoch_losses = []
    for _ in range(epochs):
        module.train()
        order = torch.randperm(n) if shuffle else torch.arange(n)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            optimizer.zero_grad()
            loss = F.cross_entropy(module(x[idx]), y[idx], reduction="none").mean()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        epoch_losses.append(total / n)
    return epoch_losses


@pytest.mark.parametrize("shuffle", [False, True])
def test_fit_reaches_the_same_weights_as_a_hand_written_loop(shuffle):
    x, y = torch.randn(70, 6), torch.randint(0, 3, (70,))
    module = make_mlp()
    reference = copy.deepcopy(module)

    torch.manual_seed(1)
    expected_losses = hand_written_fit(reference, x, y, epochs=3, batch_size=16, shuffle=shuffle, lr=0.1)

    torch.manual_seed(1)
    model = epochal.Model(module, device="cpu")
    model.compile(optimizer=torch.optim.SGD(module.parameters(), lr=0.1),
                  loss=epochal.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, epochs=3, batch_size=16, shuffle=shuffle, verbose=0)

    for ours, theirs in zip(module.parameters(), reference.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    assert history.history["loss"] == pytest.approx(expected_losses, rel=1e-5)


def test_named_adam_is_torch_adam_with_keras_learning_rate_and_epsilon_placement():
    """Keras's Adam adds its epsilon (1e-7) to sqrt(v) before the bias correction: that is torch's
    Adam with `eps = 1e-7 / sqrt(1 - 0.999 ** t)` at step t."""
    x, y = torch.randn(40, 6), torch.randint(0, 3, (40,))
    module = make_mlp().eval()  # no dropout: the comparison is about the optimizer alone
    module[2].p = 0.0
    reference = copy.deepcopy(module)
    optimizer = torch.optim.Adam(reference.parameters(), lr=0.001)
    for step, start in enumerate(range(0, 40, 8), start=1):
        optimizer.param_groups[0]["eps"] = 1e-7 / math.sqrt(1 - 0.999 ** step)
        optimizer.zero_grad()
        F.cross_entropy(reference(x[start:start + 8]), y[start:start + 8]).backward()
        optimizer.step()

    model = epochal.Model(module, device="cpu")
    model.compile(optimizer="Adam", loss=epochal.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)

    for ours, theirs in zip(module.parameters(), reference.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_save_and_load_round_trip_weights_and_optimizer_state(tmp_path):
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    model = epochal.Model(make_mlp(), device="cpu")
    model.compile(optimizer="adam", loss=epochal.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    model.save(tmp_path / "full.pt", {"epoch": 0})
    model.save_weights(tmp_path / "weights.safetensors")

    other = epochal.Model(make_mlp(), device="cpu")
    other.compile(optimizer="adam", loss=epochal.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert other.load(tmp_path / "full.pt") == {"epoch": 0}
    for ours, theirs in zip(model.module.parameters(), other.module.parameters()):
        assert torch.equal(ours, theirs)
    assert other.optimizer.state_dict()["state"][0]["step"] == model.optimizer.state_dict()["state"][0]["step"]

    third = epochal.Model(make_mlp(), device="cpu")
    third.load_weights(tmp_path / "weights.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(model.module.parameters(), third.module.parameters()))
