"""The benchmark workloads W1–W3: their modules and seeded synthetic data, shared by every variant."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

#: Share of the samples held out for validation, as the issue's 54k + 6k split.
VALIDATION_SHARE = 0.1
NUM_CLASSES = 10


@dataclass(frozen=True)
class Workload:
    """One benchmark workload: a module to train, its input shape and its batch size."""

    name: str
    description: str
    input_shape: tuple[int, ...]
    batch_size: int
    build: Callable[[], nn.Module]


@dataclass(frozen=True)
class Data:
    """Training and validation tensors, all in memory."""

    x: torch.Tensor
    y: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


class Unsupported(Exception):
    """The library under test does not offer what a variant needs yet (e.g. `jit_compile`)."""


def _mlp(*widths: int) -> nn.Module:
    layers: list[nn.Module] = []
    for fan_in, fan_out in itertools.pairwise(widths):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1])  # logits out: no activation after the last layer


def _cnn() -> nn.Module:
    # Keras's defaults: 3×3 "valid" convolutions, 2×2 pooling; 28 -> 26 -> 13 -> 11 -> 5.
    return nn.Sequential(
        nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 5 * 5, NUM_CLASSES),
    )


WORKLOADS = {
    w.name: w
    for w in (
        Workload("W1", "MLP 784-256-256-10, batch 128", (784,), 128, lambda: _mlp(784, 256, 256, 10)),
        Workload("W2", "MLP 784-32-10, batch 32", (784,), 32, lambda: _mlp(784, 32, 10)),
        Workload("W3", "CNN conv16-pool-conv32-pool-dense, 1×28×28, batch 128", (1, 28, 28), 128, _cnn),
    )
}


def build_module(workload: Workload, seed: int) -> nn.Module:
    """The workload's module with weights drawn from `seed`, identical for every variant."""
    torch.manual_seed(seed)
    return workload.build()


def make_data(workload: Workload, samples: int, seed: int) -> Data:
    """`samples` seeded random inputs, the last 10 % held out for validation.

    Labels come from a fixed random linear "teacher" so the task is learnable and the reported
    accuracy shows that training does something.
    """
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, *workload.input_shape, generator=generator)
    teacher = torch.randn(x[0].numel(), NUM_CLASSES, generator=generator)
    y = (x.flatten(1) @ teacher).argmax(1)
    n_train = samples - int(samples * VALIDATION_SHARE)
    return Data(x[:n_train], y[:n_train], x[n_train:], y[n_train:])
