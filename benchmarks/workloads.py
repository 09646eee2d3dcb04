"""The benchmark workloads W1–W5: their modules, optimizers and seeded data, shared by every variant.

W1–W3 train classifiers on synthetic in-memory arrays; W4 is a byte-level transformer language model on
the standard library's source (`transformer`); W5 is W1 read from memory-mapped files through a
DataLoader with worker processes (`streamed`)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from streamed import Loaders, memmap_loaders
from torch import nn
from transformer import CONTEXT, BytesGPT, stdlib_sequences

#: Share of the samples held out for validation, as the issue's 54k + 6k split.
VALIDATION_SHARE = 0.1
NUM_CLASSES = 10


@dataclass(frozen=True)
class Workload:
    """One benchmark workload: a module to train, its input shape, batch size, optimizer and data.

    `optimizer` is a Keras name every variant builds with the same hyperparameters (`hand_optimizer`);
    `samples` is the default size of the data (training + validation); `streamed` feeds it through
    DataLoaders over memory-mapped files instead of in-memory tensors."""

    name: str
    description: str
    input_shape: tuple[int, ...]
    batch_size: int
    build: Callable[[], nn.Module]
    samples: int = 60_000
    optimizer: str = "adam"
    streamed: bool = False
    language_model: bool = False


@dataclass(frozen=True)
class Data:
    """Training and validation tensors, all in memory; for a streamed workload also the loaders over them."""

    x: torch.Tensor
    y: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    loaders: Loaders | None = None


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
        Workload("W4", f"byte-level transformer LM, 4 layers, d_model 256, 4 heads, context {CONTEXT}, "
                 "on the standard library's source, AdamW, batch 32", (CONTEXT,), 32, BytesGPT, samples=1_280,
                 optimizer="adamw", language_model=True),
        Workload("W5", "W1 read from memory-mapped .npy files by a DataLoader with 2 workers, batch 128", (784,), 128,
                 lambda: _mlp(784, 256, 256, 10), streamed=True),
    )
}


def hand_optimizer(workload: Workload, parameters: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """The torch optimizer with the hyperparameters of Keras's `workload.optimizer` (what epochal builds from the
    name), with torch's default implementation, as a hand-written loop builds it."""
    if workload.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=1e-3, weight_decay=0.004)
    return torch.optim.Adam(parameters, lr=1e-3)


def build_module(workload: Workload, seed: int) -> nn.Module:
    """The workload's module with weights drawn from `seed`, identical for every variant."""
    torch.manual_seed(seed)
    return workload.build()


def make_data(workload: Workload, samples: int, seed: int) -> Data:
    """`samples` seeded samples, the last 10 % held out for validation.

    For the classifiers, labels come from a fixed random linear "teacher" so the task is learnable and
    the reported accuracy shows that training does something; W4 reads windows of real source code.
    """
    generator = torch.Generator().manual_seed(seed)
    if workload.language_model:
        x, y = stdlib_sequences(samples, generator)
    else:
        x = torch.randn(samples, *workload.input_shape, generator=generator)
        teacher = torch.randn(x[0].numel(), NUM_CLASSES, generator=generator)
        y = (x.flatten(1) @ teacher).argmax(1)
    n_train = samples - int(samples * VALIDATION_SHARE)
    parts = (x[:n_train], y[:n_train], x[n_train:], y[n_train:])
    loaders = memmap_loaders(*parts, batch_size=workload.batch_size) if workload.streamed else None
    return Data(*parts, loaders=loaders)
