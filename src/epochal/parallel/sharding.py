"""This rank's share of the data: slices of every global batch for training, contiguous blocks for
evaluation, and DataLoaders rebuilt with a sampler per rank."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol

import torch

from epochal.data.arrays import ArrayAdapter
from epochal.data.batch import Batch
from epochal.data.structure import slice_rows, take

class Ranks(Protocol):
    """The process group as sharding needs it (`Cluster` is one)."""

    rank: int
    world_size: int
    device: torch.device

    def broadcast(self, tensor: torch.Tensor) -> torch.Tensor: ...


class ShardedArrays:
    """This rank's slice of every global batch of an `ArrayAdapter`; every rank runs `steps` steps.

    The epoch order is rank 0's `torch.randperm` (every rank draws one, so torch's generator advances
    as in a 1-process run, then rank 0's is broadcast). A global batch of `r` samples is split in
    rank order into parts of `r // W` or `r // W + 1` (the larger ones first); a rank whose part is
    empty gets a one-sample placeholder with `loss_scale=0`, which adds nothing to gradients or logs.
    """

    def __init__(self, arrays: ArrayAdapter, cluster: Ranks) -> None:
        self.arrays = arrays
        self.cluster = cluster
        self.steps = arrays.steps
        self.ran_dry = False

    @property
    def shuffle(self) -> bool:
        return self.arrays.shuffle

    def example(self) -> Batch:
        """This rank's part of the first global batch in order (no random draw), shaped as its training parts."""
        return next(self._batches(None, range(1)))

    def epoch_batches(self, epoch: int) -> Iterator[Batch]:
        order, batches = self.arrays.cursor.next_epoch(self._draw_order)  # continues as `arrays` would
        return self._batches(order, batches)

    def _draw_order(self) -> torch.Tensor:
        order = self.cluster.broadcast(torch.randperm(self.arrays.num_samples).to(self.cluster.device))
        return order.to(self.arrays._device())

    def state_dict(self) -> dict[str, Any]:
        return self.arrays.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.arrays.load_state_dict(state)

    def _batches(self, order: torch.Tensor | None, batches: range) -> Iterator[Batch]:
        arrays, world, me = self.arrays, self.cluster.world_size, self.cluster.rank
        size = arrays.batch_size
        parts = (arrays.x, arrays.y, arrays.sample_weight)
        for start in range(batches.start * size, min(batches.stop * size, arrays.num_samples), size):
            stop = min(start + size, arrays.num_samples)
            lo, hi = block(stop - start, world, me)
            scale = (hi - lo) * world / (stop - start)
            if hi == lo:  # placeholder: the global batch's last sample, contributing nothing
                lo, hi = stop - start - 1, stop - start
            if order is None:
                rows = [None if part is None else slice_rows(part, start + lo, start + hi) for part in parts]
            else:
                index = order[start + lo:start + hi]
                rows = [None if part is None else take(part, index) for part in parts]
            yield Batch(rows[0], rows[1], rows[2], loss_scale=scale)


class Agreement(Protocol):
    def any(self, flag: bool) -> bool: ...


class Lockstep:
    """An evaluation adapter whose ranks all run the same number of batches, as FSDP needs (every forward
    all-gathers weights, so a rank that stopped early would leave the others waiting).

    A rank out of batches repeats its last one as a placeholder (`loss_scale=0`), which counts for
    nothing in the logs and whose predictions are dropped. One all-reduce per batch agrees on going on.
    """

    def __init__(self, adapter: Any, sync: Agreement) -> None:
        self.adapter, self.sync = adapter, sync

    def __getattr__(self, name: str) -> Any:
        return getattr(self.adapter, name)  # the adapter's `steps`, `example()`, `y`...

    def epoch_batches(self, epoch: int) -> Iterator[Batch]:
        batches = iter(self.adapter.epoch_batches(epoch))
        last: Batch | None = None
        while True:
            batch = next(batches, None)
            if not self.sync.any(batch is not None):
                return
            if batch is None:
                if last is None:
                    raise ValueError("Evaluating or predicting under FSDP needs at least one batch on every process; "
                                     "this one has none. Pass at least one sample per process.")
                batch = last._replace(loss_scale=0.0)
            last = batch
            yield batch


def block_of(arrays: ArrayAdapter, cluster: Ranks) -> ArrayAdapter:
    """This rank's contiguous block of the samples an evaluation covers, batched by `batch_size / W`.

    Evaluation has no collective per batch, so ranks may run different numbers of batches; blocks in
    rank order let `predict` join the outputs back in sample order.
    """
    covered = min(arrays.num_samples, arrays.steps * arrays.batch_size)
    if covered < cluster.world_size:
        raise ValueError(
            f"Evaluating or predicting with {cluster.world_size} processes needs at least {cluster.world_size} "
            f"samples, one per process. Received: {covered} samples."
        )
    lo, hi = block(covered, cluster.world_size, cluster.rank)
    part = [None if p is None else slice_rows(p, lo, hi) for p in (arrays.x, arrays.y, arrays.sample_weight)]
    return ArrayAdapter(*part, num_samples=hi - lo,  # type: ignore[arg-type]
                        batch_size=arrays.batch_size // cluster.world_size, shuffle=False)


def block(n: int, world: int, index: int) -> tuple[int, int]:
    """`[lo, hi)` of part `index` when `n` items are cut into `world` contiguous parts, larger first."""
    base, extra = divmod(n, world)
    lo = index * base + min(index, extra)
    return lo, lo + base + (1 if index < extra else 0)


def rebuild(loader: torch.utils.data.DataLoader, sampler: Iterable[int], batch_size: int) -> torch.utils.data.DataLoader:
    """`loader` with another sampler and batch size, everything else (workers, collate...) kept."""
    workers = loader.num_workers
    return torch.utils.data.DataLoader(
        loader.dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,  # type: ignore[arg-type]
        collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, drop_last=loader.drop_last,
        timeout=loader.timeout, worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context, generator=loader.generator,
        prefetch_factor=loader.prefetch_factor if workers else None,
        persistent_workers=loader.persistent_workers, pin_memory_device=loader.pin_memory_device,
    )
