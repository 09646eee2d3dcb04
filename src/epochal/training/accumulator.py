"""Epoch logs as exact sample-weighted means: per-batch values summed on the device, read once at the end."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from epochal.data import Batch
from epochal.logs import Logs
from epochal.parallel.sync import LOCAL, LocalSync
from epochal.step.values import StepValues

#: (log names, metric) of the metrics computed over a whole pass, `Task.stateful`.
Stateful = Callable[[], list[tuple[list[str], Any]]]


class MeanAccumulator:
    """Sample-weighted sums of each batch's values, kept on the device until the pass ends.

    The names come from the step's first values (`keys` when resumed). Under torch.distributed, `sync`
    adds up every rank's sums and counts at the end (and, with `sync.per_batch`, gives each batch's logs
    as the global batch's values).
    """

    def __init__(self, stateful: Stateful, sync: LocalSync | Any = LOCAL, keys: tuple[str, ...] = ()) -> None:
        self.stateful = stateful
        self.keys = keys
        self.sums: torch.Tensor | None = None
        self.count = 0
        self.sync = sync
        self._global_values: torch.Tensor | None = None

    def add(self, step_values: StepValues, batch: Batch) -> None:
        size, values = batch.weight, step_values.tensor
        self.keys = step_values.names
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

    def batch_logs(self, step_values: StepValues) -> Logs:
        if self.sync.per_batch:
            return Logs(self.keys, self._global_values)
        values = step_values.tensor
        return Logs(self.keys, values[-1] if values.ndim == 2 else values)  # an Execution: its last batch

    def result(self) -> dict[str, float]:
        """Exact means over every sample seen; stateful metrics computed over the whole pass."""
        keys, sums, count = self.sync.totals(self.keys, self.sums, self.count)
        if sums is None:
            return {}
        means = dict(zip(keys, (sums / count).tolist()))
        for names, metric in self.stateful():
            if names[0] in means:  # a user's step logs the compiled metrics only if it asks for them
                values = metric.result(self.sync.gather).reshape(-1).tolist()  # every process's state
                means.update(zip(names, values))
        return means
