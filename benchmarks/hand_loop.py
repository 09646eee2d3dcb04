"""The baseline: a hand-written, best-practice PyTorch training loop, as a careful engineer writes it.

Tensors stay in memory, batches are index slices of a per-epoch `torch.randperm` (no DataLoader),
the optimizer keeps torch's default implementation, gradients are reset with `set_to_none=True`, loss
and correct counts accumulate on the device, and the host syncs once per epoch (after validation). On
a GPU the data is moved there once, before the first epoch, and the permutation is drawn there. A
streamed workload (W5) iterates its DataLoaders instead. `compile_module=True` is nanoGPT's recipe:
`module = torch.compile(module)`, the rest of the loop unchanged; `precision="bf16-mixed"` is nanoGPT's too:
forward and loss under `torch.autocast(dtype=torch.bfloat16)`, in training and in validation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.nn import functional as F
from clock import EpochSpan, now
from workloads import Data



Batches = Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]


def _sums(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss of one batch and its count of correct predictions, both left on the device; a language
    model's `(batch, time, vocab)` logits are flattened to one prediction per token, as nanoGPT does."""
    logits = module(x)
    return F.cross_entropy(logits.flatten(0, -2), y.flatten()), (logits.argmax(-1) == y).sum()


def _epochs_of_batches(data: Data, batch_size: int, device: str) -> tuple[Batches, Batches]:
    """Callables giving one epoch of training and of validation batches, on `device`."""
    if data.loaders is not None:
        loaders = data.loaders

        def streamed(loader: torch.utils.data.DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            return ((x.to(device), y.to(device)) for x, y in loader)

        return lambda: streamed(loaders.train), lambda: streamed(loaders.validation)
    data = Data(*(t.to(device) for t in (data.x, data.y, data.x_val, data.y_val)))

    def train_batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(data.x), device=device)
        for start in range(0, len(data.x), batch_size):
            index = order[start:start + batch_size]
            yield data.x[index], data.y[index]

    def validation_batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(data.x_val), batch_size):
            yield data.x_val[start:start + batch_size], data.y_val[start:start + batch_size]

    return train_batches, validation_batches


def train(
    module: nn.Module, data: Data, *, batch_size: int, epochs: int, optimizer: Callable[..., torch.optim.Optimizer],
    device: str = "cpu", compile_module: bool = False, precision: str = "32",
) -> tuple[list[EpochSpan], dict[str, float]]:
    """Train `module` on `device` for `epochs` epochs with validation after each; `optimizer` builds the
    optimizer from the parameters; `precision` is "32" or "bf16-mixed" (autocast to bfloat16).

    Returns the wall-clock (begin, end) of every epoch and the last epoch's logs, in Keras's keys.
    """
    module.to(device)
    train_batches, validation_batches = _epochs_of_batches(data, batch_size, device)
    update = optimizer(module.parameters())
    step: nn.Module = torch.compile(module) if compile_module else module  # type: ignore[assignment]
    autocast = functools.partial(torch.autocast, torch.device(device).type, dtype=torch.bfloat16,
                                 enabled=precision == "bf16-mixed")
    n, n_val = data.y.numel(), data.y_val.numel()  # targets: a language model has one per token
    spans: list[EpochSpan] = []
    logs: dict[str, float] = {}
    for _ in range(epochs):
        begin = now()
        module.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        for x, y in train_batches():
            with autocast():
                loss, hits = _sums(step, x, y)
            update.zero_grad(set_to_none=True)
            loss.backward()
            update.step()
            loss_sum += loss.detach() * y.numel()
            correct += hits
        module.eval()
        val_loss_sum = torch.zeros((), device=device)
        val_correct = torch.zeros((), dtype=torch.long, device=device)
        with torch.inference_mode():
            for x, y in validation_batches():
                with autocast():
                    loss, hits = _sums(step, x, y)
                val_loss_sum += loss * y.numel()
                val_correct += hits
        totals = torch.stack([loss_sum, correct, val_loss_sum, val_correct]).tolist()  # the one sync
        means = [total / count for total, count in zip(totals, (n, n, n_val, n_val))]
        logs = dict(zip(("loss", "accuracy", "val_loss", "val_accuracy"), means))
        spans.append((begin, now()))
    return spans, logs
