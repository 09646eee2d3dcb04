"""Epoch logs as exact sample-weighted means: per-batch values summed on the device, read once at the end."""

from __future__ import annotations

from typing import Any

import torch

from epochal.data import Batch
from epochal.logs import Logs
from epochal.parallel.sync import LOCAL, LocalSync
from epochal.task import Task


class MeanAccumulator:
    """Sample-weighted sums of each batch's values, kept on the device until the epoch ends.

    Under torch.distributed, `sync` adds up every rank's sums and counts at the end (and, with
    `sync.per_batch`, gives each batch's logs as the global batch's values).
    """

    def __init__(self, task: Task, sync: LocalSync | Any = LOCAL) -> None:
        self.task = task
        self.keys = tuple(task.log_keys())
        self.sums: torch.Tensor | None = None
        self.count = 0
        self.sync = sync
        self._global_values: torch.Tensor | None = None

    def add(self, values: torch.Tensor, batch: Batch) -> None:
        size = batch.weight
        if values.ndim == 2:  # one row per batch of an Execution, all of the same size
            values = values.mean(0)
        if self.sums is None:
            dtype = torch.float32 if values.device.type == "mps" else torch.float64
            self.sums = values.to(dtype) * size
        else:
            self.sums.add_(values, alpha=size)
        self.count += size
        if self.sync.per_batch:
            self._global_values = self.sync.batch_values(values, size)

    def batch_logs(self, values: torch.Tensor) -> Logs:
        if self.sync.per_batch:
            return Logs(self.keys, self._global_values)
        return Logs(self.keys, values[-1] if values.ndim == 2 else values)  # an Execution: its last batch

    def result(self) -> dict[str, float]:
        """Exact means over every sample seen; stateful metrics computed over the whole pass."""
        sums, count = self.sync.totals(self.sums, self.count, len(self.keys))
        if sums is None:
            return {}
        means = sums / count
        for position, metric in self.task.stateful():
            value = metric.result(self.sync.gather).to(means).reshape(-1)  # every process's state
            means[position:position + len(value)] = value
        return dict(zip(self.keys, means.tolist()))
