"""In-memory arrays: converted and moved to the device once, batched by index each epoch."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from epochal.data.batch import Batch
from epochal.data.pass_cursor import PassCursor
from epochal.data.structure import Tree, flatten, slice_rows, take


class ArrayAdapter:
    """Batches `[0, b), [b, 2b), ...` of tensors already on the device; the last may be short.

    With `shuffle`, each epoch draws `torch.randperm(n)` from torch's global generator (exactly what
    a hand-written loop does, so `torch.manual_seed` makes runs repeatable) and takes batches by
    index; without it, batches are contiguous views in order `0..n-1`.

    With `carry_over` (training with `steps_per_epoch`) an epoch continues where the last one
    stopped; see `PassCursor`, whose position `state_dict()` gives to backups.

    Shuffled rows are gathered `gather_batches` batches at a time (one `index_select` per part) and
    each batch is a view of that block, so the batches of one execution (`steps_per_execution`) lie
    back to back in memory and are stacked without a copy (`executions.stack`).
    """

    def __init__(
        self,
        x: Tree,
        y: Tree | None,
        sample_weight: torch.Tensor | None,
        *,
        num_samples: int,
        batch_size: int,
        shuffle: bool,
        steps: int | None = None,
        gather_batches: int = 1,
        carry_over: bool = False,
    ) -> None:
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.gather_batches = gather_batches
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.shuffle = shuffle
        available = math.ceil(num_samples / batch_size)
        if steps is not None and steps > available:
            raise ValueError(
                f"`steps` asks for {steps} batches per epoch but the arrays hold only {available} batches "
                f"of {batch_size} ({num_samples} samples). Pass steps <= {available}, or a dataset."
            )
        self.steps = available if steps is None else steps
        self.ran_dry = False  # arrays never run out
        self.cursor = PassCursor(num_samples, batch_size, self.steps, shuffle=shuffle, carry_over=carry_over)

    def example(self) -> Batch:
        """A batch of the training batches' shapes (the first rows), drawn without the random generator."""
        rows = min(self.batch_size, self.num_samples)
        x, y, w = (None if part is None else slice_rows(part, 0, rows) for part in self._parts())
        return Batch(x, y, w)

    def epoch_batches(self, epoch: int) -> Iterator[Batch]:
        """The batches of one epoch (`epoch` is unused: the order comes from the global generator)."""
        order, batches = self.cursor.next_epoch(self.draw_order)
        return self._batches(order, batches)

    def draw_order(self) -> torch.Tensor:
        """A new pass's order: `torch.randperm` from the global generator, on the data's device."""
        return torch.randperm(self.num_samples).to(self._device())

    def state_dict(self) -> dict[str, Any]:
        """Where the next epoch starts (for backups)."""
        return self.cursor.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        order = state.get("order")
        self.cursor.load_state_dict({**state, "order": None if order is None else order.to(self._device())})

    def _batches(self, order: torch.Tensor | None, batches: range) -> Iterator[Batch]:
        size = self.batch_size
        begin, end = batches.start * size, min(batches.stop * size, self.num_samples)
        block_rows = size * self.gather_batches
        for block_start in range(begin, end, block_rows):
            block_stop = min(block_start + block_rows, end)
            if order is None:
                block = [None if part is None else slice_rows(part, block_start, block_stop) for part in self._parts()]
            else:
                index = order[block_start:block_stop]
                block = [None if part is None else take(part, index) for part in self._parts()]
            for start in range(0, block_stop - block_start, size):
                stop = min(start + size, block_stop - block_start)
                x, y, w = (None if part is None else slice_rows(part, start, stop) for part in block)
                yield Batch(x, y, w)

    def _parts(self) -> tuple[Tree, Tree | None, torch.Tensor | None]:
        return self.x, self.y, self.sample_weight

    def _device(self) -> torch.device:
        return flatten(self.x)[0].device
