"""Several batches per step call (Keras's `steps_per_execution`): grouping and ungrouping.

`group_batches` stacks `n` consecutive batches of identical shapes into one `Execution` whose
tensors are `[n, batch, ...]`; a batch that does not fit a full group of equal shapes (the short
last batch, the remainder of an epoch, a rank's uneven share of a distributed batch) passes through
alone. The loop treats an Execution like a
batch of `n * batch` samples whose step returns one row of log values per batch, and fires the
batch callbacks once per Execution with the index of its last batch, as Keras does.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any, NamedTuple

import torch

from epochal.data.batch import Batch
from epochal.data.structure import Tree, flatten, map_structure


class Execution(NamedTuple):
    """`steps` batches of equal shapes stacked along a new first axis."""

    x: Tree
    y: Tree | None
    sample_weight: torch.Tensor | None
    steps: int

    @property
    def size(self) -> int:
        """Number of samples in all the batches together."""
        first = flatten(self.x)[0]
        return int(first.shape[0] * first.shape[1])

    @property
    def weight(self) -> int:
        """Samples the Execution's values stand for in epoch means (all of them)."""
        return self.size

    def batches(self) -> list[Batch]:
        """The batches this Execution stacks, in order (views)."""
        return [Batch(row(self.x, i), row(self.y, i), row(self.sample_weight, i)) for i in range(self.steps)]


def row(tree: Tree, i: int) -> Tree:
    return None if tree is None else map_structure(lambda t: t[i], tree)


def shapes(batch: Batch | Execution) -> tuple[object, ...]:
    """What a compiled graph specialises on: structure, shapes and dtypes of every part."""
    return tuple(None if part is None else tuple((t.shape, t.dtype) for t in flatten(part)) for part in batch[:3])


def stack(batches: list[Batch]) -> Execution:
    parts: list[Any] = []
    for index in range(3):
        first = batches[0][index]
        if first is None:
            parts.append(None)
            continue
        leaves = [flatten(batch[index]) for batch in batches]
        joined = iter([_stack([leaf[i] for leaf in leaves]) for i in range(len(leaves[0]))])
        parts.append(map_structure(partial(_next, joined), first))
    return Execution(parts[0], parts[1], parts[2], len(batches))


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """`torch.stack(tensors)`; a view, not a copy, when they lie back to back in one storage (the
    batches of one gathered block, see `ArrayAdapter`)."""
    first = tensors[0]
    base, step = first.untyped_storage().data_ptr(), first.numel()
    adjacent = all(
        t.is_contiguous() and t.shape == first.shape and t.untyped_storage().data_ptr() == base
        and t.storage_offset() == first.storage_offset() + i * step
        for i, t in enumerate(tensors)
    )
    if not adjacent:
        return torch.stack(tensors)
    return first.as_strided((len(tensors), *first.shape), (step, *first.stride()))


def _next(iterator: Iterator[torch.Tensor], _: torch.Tensor) -> torch.Tensor:
    return next(iterator)


def group_batches(batches: Iterator[Batch], n: int) -> Iterator[Batch | Execution]:
    """`batches` in groups of `n` equal-shaped batches stacked as Executions; misfits pass alone."""
    if n == 1:
        yield from batches
        return
    pending: list[Batch] = []
    signature: tuple[object, ...] | None = None
    for batch in batches:
        if batch.loss_scale != 1.0:  # a rank's uneven share or placeholder (distributed): always alone
            yield from pending
            pending, signature = [], None
            yield batch
            continue
        current = shapes(batch)
        if pending and current != signature:
            yield from pending
            pending = []
        signature = current
        pending.append(batch)
        if len(pending) == n:
            yield stack(pending)
            pending = []
    yield from pending
