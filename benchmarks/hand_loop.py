"""The baseline: a hand-written, best-practice PyTorch training loop, as a careful engineer writes it.

Tensors stay in memory, batches are index slices of a per-epoch `torch.randperm` (no DataLoader),
`torch.optim.Adam` keeps its defaults, gradients are reset with `set_to_none=True`, loss and
correct counts accumulate on the device, and the host syncs once per epoch (after validation). On a
GPU the data is moved there once, before the first epoch, and the permutation is drawn there.
"""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.nn import functional as F
from workloads import Data

EpochSpan = tuple[float, float]


def _sums(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss of one batch and its count of correct predictions, both left on the device."""
    logits = module(x)
    return F.cross_entropy(logits, y), (logits.argmax(1) == y).sum()


def train(
    module: nn.Module, data: Data, *, batch_size: int, epochs: int, device: str = "cpu"
) -> tuple[list[EpochSpan], dict[str, float]]:
    """Train `module` on `device` for `epochs` epochs with validation after each.

    Returns the wall-clock (begin, end) of every epoch and the last epoch's logs, in Keras's keys.
    """
    module.to(device)
    data = Data(*(t.to(device) for t in (data.x, data.y, data.x_val, data.y_val)))
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    n, n_val = len(data.x), len(data.x_val)
    spans: list[EpochSpan] = []
    logs: dict[str, float] = {}
    for _ in range(epochs):
        begin = time.perf_counter()
        module.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        order = torch.randperm(n, device=device)
        for start in range(0, n, batch_size):
            index = order[start:start + batch_size]
            loss, hits = _sums(module, data.x[index], data.y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(index)
            correct += hits
        module.eval()
        val_loss_sum = torch.zeros((), device=device)
        val_correct = torch.zeros((), dtype=torch.long, device=device)
        with torch.inference_mode():
            for start in range(0, n_val, batch_size):
                x, y = data.x_val[start:start + batch_size], data.y_val[start:start + batch_size]
                loss, hits = _sums(module, x, y)
                val_loss_sum += loss * len(y)
                val_correct += hits
        totals = torch.stack([loss_sum, correct, val_loss_sum, val_correct]).tolist()  # the one sync
        means = [total / count for total, count in zip(totals, (n, n, n_val, n_val))]
        logs = dict(zip(("loss", "accuracy", "val_loss", "val_accuracy"), means))
        spans.append((begin, time.perf_counter()))
    return spans, logs
