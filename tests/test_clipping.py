"""Gradient clipping with Keras's names equals clipping by hand, eager and compiled."""

import copy

import pytest
import torch
import torch.nn.functional as F

import epochal
import epochal.step.compiled


def hand_step(module, x, y, clip):
    """One SGD step (lr 0.5) with the gradients clipped by `clip(parameters)` before the update."""
    optimizer = torch.optim.SGD(module.parameters(), lr=0.5)
    optimizer.zero_grad()
    F.cross_entropy(module(x), y).backward()
    clip(list(module.parameters()))
    optimizer.step()


def per_tensor_norm(limit):
    def clip(parameters):
        for p in parameters:
            p.grad.mul_(limit / torch.linalg.vector_norm(p.grad).clamp_min(limit))
    return clip


def per_value(limit):
    def clip(parameters):
        for p in parameters:
            p.grad.clamp_(-limit, limit)
    return clip


def global_norm(limit):
    return lambda parameters: torch.nn.utils.clip_grad_norm_(parameters, limit)


@pytest.mark.parametrize("jit_compile", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("option, clip", [
    ({"clipnorm": 0.05}, per_tensor_norm(0.05)),
    ({"clipvalue": 0.01}, per_value(0.01)),
    ({"global_clipnorm": 0.05}, global_norm(0.05)),
], ids=["clipnorm", "clipvalue", "global_clipnorm"])
def test_clipping_equals_clipping_by_hand(monkeypatch, jit_compile, option, clip):
    monkeypatch.setitem(epochal.step.compiled._COMPILE, "backend", "aot_eager")  # see test_compiled.py
    x, y = torch.randn(16, 4) * 5, torch.randint(0, 3, (16,))
    module = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    reference = copy.deepcopy(module)
    hand_step(reference, x, y, clip)

    model = epochal.Model(module, device="cpu")
    model.compile(optimizer=torch.optim.SGD(module.parameters(), lr=0.5),
                  loss=epochal.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit_compile, **option)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    for ours, theirs in zip(module.parameters(), reference.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    assert model.history.params[next(iter(option))] == next(iter(option.values()))


def test_clipping_actually_changes_the_update():
    x, y = torch.randn(16, 4) * 5, torch.randint(0, 3, (16,))
    module = torch.nn.Linear(4, 3)
    clipped, unclipped = copy.deepcopy(module), copy.deepcopy(module)
    hand_step(clipped, x, y, global_norm(0.05))
    hand_step(unclipped, x, y, lambda parameters: None)
    assert not torch.allclose(clipped.weight, unclipped.weight)


@pytest.mark.parametrize("kwargs, match", [
    ({"clipnorm": 0}, r"`clipnorm` must be positive. Received: clipnorm=0"),
    ({"clipvalue": -1.0}, r"`clipvalue` must be positive. Received: clipvalue=-1.0"),
    ({"clipnorm": 1.0, "global_clipnorm": 1.0}, r"Only one of `clipnorm`, `clipvalue` and `global_clipnorm`"),
])
def test_bad_clipping_values_are_errors(kwargs, match):
    model = epochal.Model(torch.nn.Linear(4, 3), device="cpu")
    with pytest.raises(ValueError, match=match):
        model.compile(optimizer="sgd", loss="mse", **kwargs)


def test_a_clipping_value_of_the_wrong_type_is_a_type_error():
    model = epochal.Model(torch.nn.Linear(4, 3), device="cpu")
    with pytest.raises(TypeError, match=r"`clipnorm` must be a number or None. Received: clipnorm='1'"):
        model.compile(optimizer="sgd", loss="mse", clipnorm="1")
