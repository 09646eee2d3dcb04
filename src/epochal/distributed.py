"""Everything torch.distributed: joining the job, DDP, sharded data and exact cross-rank reductions.

Under `torchrun` (or in a process whose default group is already initialised) `epochal.Model` trains
data-parallel with no change to the script:

- `batch_size` is the *global* batch: each of the `W` processes takes `batch_size / W` samples of it.
- Every rank draws the same epoch permutation (rank 0's, broadcast) and takes its slice of each
  global batch, so the updates equal a 1-process run with the same `batch_size`, up to float rounding.
- Loss and metric *sums and counts* are all-reduced, never means of means, so every rank sees the
  same logs, equal to a 1-process run's.
- Callbacks run on every rank with those logs; side effects (files, progress output) happen on rank
  0 only. File-writing code uses `is_main_process()` and `barrier()` from here.

The training step under DDP is always the eager one (`sharded_train_step`): a compiled or functional
step does not see DDP's gradient hooks, so `compile()` options that change the step do not apply
when distributed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from epochal.callbacks.callback import Callback, overrides
from epochal.data.arrays import ArrayAdapter
from epochal.data.batch import Batch
from epochal.data.structure import Tree, call_module, flatten, slice_rows, take
from epochal.steps import StepFunctions, predict_step, test_step

if TYPE_CHECKING:
    from epochal.task import Task

#: How long a collective (or joining the group) may wait for a peer before it is an error, not a hang.
DEFAULT_TIMEOUT = timedelta(minutes=10)

# When a callback overrides one of these, each batch's logs are all-reduced (the global batch's);
# otherwise only the epoch's sums are.
_BATCH_HOOKS = ("on_train_batch_begin", "on_train_batch_end")


# -- the job ------------------------------------------------------------------------------------


def launched_by_torchrun() -> bool:
    """Whether this process was started by `torchrun` (its environment names a rank and a world)."""
    return all(name in os.environ for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def is_distributed() -> bool:
    """Whether a default process group with more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank in the default group; 0 when not distributed."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes in the default group; 1 when not distributed."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Whether this process does the side effects (files, printing): rank 0, or the only process."""
    return rank() == 0


def barrier() -> None:
    """Wait until every rank gets here (a no-op in one process), e.g. after rank 0 wrote a file."""
    if is_distributed():
        dist.barrier()


def local_rank() -> int:
    """This process's index on its machine (`LOCAL_RANK` from torchrun)."""
    if "LOCAL_RANK" in os.environ:
        return int(os.environ["LOCAL_RANK"])
    count = torch.cuda.device_count()
    return rank() % count if count else 0


def init_process_group(*, backend: str | None = None, timeout: timedelta = DEFAULT_TIMEOUT) -> None:
    """Join the torchrun job's default process group; a no-op when one is already initialised.

    The timeout bounds every collective: a dead or stuck peer becomes an error after `timeout`
    instead of a hang. Call this yourself before `epochal.Model(...)` to choose another timeout.

    Args:
        backend: `"nccl"` or `"gloo"`. Defaults to `None`: NCCL when CUDA is available, else gloo.
        timeout: How long to wait for peers. Defaults to `DEFAULT_TIMEOUT` (10 minutes).
    """
    if dist.is_initialized():
        return
    if not launched_by_torchrun():
        raise RuntimeError(
            "No distributed job to join: RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT are not all set. "
            "Launch the script with `torchrun --nproc_per_node=N script.py`."
        )
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        gpus = torch.cuda.device_count()
        if local_rank() >= gpus:  # NCCL needs a GPU of its own per process on a machine
            raise RuntimeError(
                f"This process is LOCAL_RANK={local_rank()} on a machine with {gpus} CUDA device(s), and NCCL "
                f"needs one per process. Launch at most {gpus} processes per machine "
                "(`torchrun --nproc_per_node=...`), or pass backend=\"gloo\" to train on CPUs."
            )
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend, timeout=timeout)


def connect(distributed: bool | None) -> Cluster | None:
    """The job this process belongs to, joining it if needed; None to train in this process alone.

    Args:
        distributed: `None` detects torchrun or an initialised group; `True` requires one; `False`
            trains each process on its own.
    """
    if distributed is False:
        return None
    if not dist.is_available() or not (dist.is_initialized() or launched_by_torchrun()):
        if distributed:
            raise RuntimeError(
                "`distributed=True` but this process is not part of a distributed job. Launch it with "
                "`torchrun --nproc_per_node=N script.py`, or call torch.distributed.init_process_group first."
            )
        return None
    init_process_group()
    if dist.get_world_size() == 1:
        return None  # one process: identical to not being distributed, without DDP's overhead
    return Cluster()


# -- the cluster a Model trains on --------------------------------------------------------------


class Cluster:
    """The default process group as one Model sees it: its device, DDP wrapper, data and reductions."""

    def __init__(self) -> None:
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.is_main = self.rank == 0
        self._ddp: torch.nn.parallel.DistributedDataParallel | None = None
        self.device = torch.device("cpu")

    def place(self, device: str | torch.device | None) -> torch.device:
        """This rank's device: `cuda:LOCAL_RANK` on GPUs (unless an index was given), else as asked."""
        wanted = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        if wanted.type == "cuda" and wanted.index is None:
            wanted = torch.device("cuda", local_rank())
        if wanted.type == "cuda":
            torch.cuda.set_device(wanted)
        if dist.get_backend() == "nccl" and wanted.type != "cuda":
            raise ValueError(f"The NCCL process group needs a CUDA device. Received: device={wanted}")
        self.device = wanted
        return wanted

    # -- steps ------------------------------------------------------------------------------------

    def make_steps(self, module: torch.nn.Module, optimizer: torch.optim.Optimizer, task: Task) -> StepFunctions:
        """Eager steps; training goes through DDP (wrapped once), test and predict use the module itself.

        DDP's constructor broadcasts rank 0's parameters and buffers, so every rank starts equal.
        Test and predict skip DDP: they have no gradients to reduce and ranks may run different
        numbers of evaluation batches.
        """
        if self._ddp is None or self._ddp.module is not module:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self._ddp = torch.nn.parallel.DistributedDataParallel(module, device_ids=device_ids)
        return StepFunctions(
            train=partial(sharded_train_step, self._ddp, optimizer, task),
            test=partial(test_step, module, task),
            predict=partial(predict_step, module),
        )

    # -- data -------------------------------------------------------------------------------------

    def check_batch_size(self, batch_size: int, name: str = "batch_size") -> int:
        """The per-rank batch size; the global one must split evenly over the ranks."""
        if batch_size % self.world_size:
            raise ValueError(
                f"`{name}` is the global batch, split evenly over the {self.world_size} processes, so it must "
                f"be divisible by {self.world_size}. Received: {name}={batch_size}. "
                f"Pass a multiple of {self.world_size}, e.g. {name}={_round_up(batch_size, self.world_size)}."
            )
        return batch_size // self.world_size

    def shard_arrays(self, adapter: Any, *, train: bool) -> tuple[Any, bool]:
        """This rank's part of in-memory arrays (and whether it is a part); other adapters unchanged."""
        if not isinstance(adapter, ArrayAdapter):
            return adapter, False
        self.check_batch_size(adapter.batch_size)
        if train:
            return ShardedArrays(adapter, self), True
        return block_of(adapter, self), True

    def shard_dataset(self, data: Any, *, train: bool) -> tuple[Any, bool]:
        """A map-style DataLoader rebuilt to read this rank's part; anything else unchanged.

        Training loaders get a `DistributedSampler` (shuffling when the loader did, with a seed
        shared by all ranks; `set_epoch` is called every epoch) unless they already have one; the
        loader's `batch_size` is global and divided by the world size. Evaluation loaders read a
        contiguous block of samples per rank, unpadded, so results are exact and `predict` keeps
        the order. Iterable datasets, batch samplers and plain iterables are left to the user to shard.
        """
        loader = data
        if not isinstance(loader, torch.utils.data.DataLoader) or loader.batch_size is None:
            return data, False
        if isinstance(loader.dataset, torch.utils.data.IterableDataset):
            return data, False
        if train and isinstance(loader.sampler, torch.utils.data.DistributedSampler):
            return data, True
        local = self.check_batch_size(loader.batch_size, "the DataLoader's batch_size")
        if train:
            seed = int(self.broadcast(torch.randint(2**31 - 1, (1,)).to(self.device))[0])
            sampler: Iterable[int] = torch.utils.data.DistributedSampler(
                loader.dataset, num_replicas=self.world_size, rank=self.rank,
                shuffle=isinstance(loader.sampler, torch.utils.data.RandomSampler), seed=seed)
        else:
            lo, hi = _block(len(loader.dataset), self.world_size, self.rank)  # type: ignore[arg-type]
            sampler = range(lo, hi)
        return _rebuild(loader, sampler, local), True

    def broadcast(self, tensor: torch.Tensor) -> torch.Tensor:
        """Rank 0's `tensor` on every rank (same shape and dtype everywhere)."""
        dist.broadcast(tensor, src=0)
        return tensor

    # -- agreement --------------------------------------------------------------------------------

    def fit_sync(self, callbacks: Sequence[Callback]) -> GroupSync:
        """How `fit` reduces across ranks; per-batch agreement only if some callback needs it."""
        wants = any(overrides(cb, hook) for cb in callbacks for hook in _BATCH_HOOKS)
        return GroupSync(self.device, per_batch=GroupSync(self.device).any(wants))

    def eval_sync(self) -> GroupSync:
        return GroupSync(self.device)

    def gather(self, outputs: Tree | None) -> Tree:
        """Every rank's predictions (contiguous blocks, in rank order) joined in sample order."""
        from epochal.loop import concatenate

        parts: list[Tree | None] = [None] * self.world_size
        dist.all_gather_object(parts, outputs)
        return concatenate([part for part in parts if part is not None])


class GroupSync:
    """Cross-rank reductions the loop asks for: exact sums and counts, and agreed stop flags.

    With `per_batch`, each batch's logs are the global batch's (one small all-reduce per batch);
    otherwise sums are reduced only at a pass's end. Stop requests and signals are agreed after every
    training batch either way (`agree`, called by `TrainingState.after_batch`).
    """

    def __init__(self, device: torch.device, *, per_batch: bool = False) -> None:
        self.device = device
        self.per_batch = per_batch

    def totals_only(self) -> GroupSync:
        return GroupSync(self.device)

    def batch_values(self, values: torch.Tensor, weight: int) -> torch.Tensor:
        """The global batch's mean values from each rank's mean over its `weight` samples."""
        packed = torch.cat([values.to(torch.float64) * weight, values.new_tensor([weight], dtype=torch.float64)])
        dist.all_reduce(packed)
        return (packed[:-1] / packed[-1]).to(values.dtype)

    def totals(self, sums: torch.Tensor | None, count: int, size: int) -> tuple[torch.Tensor | None, int]:
        """Every rank's sums and sample counts added up (a rank that saw no sample adds zeros)."""
        local = torch.zeros(size + 1, dtype=torch.float64, device=self.device)
        if sums is not None:
            local[:-1] = sums
        local[-1] = count
        dist.all_reduce(local)
        total = int(local[-1].item())
        return (local[:-1] if total else None), total

    def any(self, flag: bool) -> bool:
        """True on every rank if `flag` is true on any."""
        return self.agree(flag)[0]

    def agree(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag true on every rank if it is true on any (one all-reduce for all of them)."""
        packed = torch.tensor([1.0 if flag else 0.0 for flag in flags], device=self.device)
        dist.all_reduce(packed, op=dist.ReduceOp.MAX)
        return tuple(bool(value) for value in packed.tolist())

    @property
    def rank(self) -> int:
        return dist.get_rank()

    @property
    def world_size(self) -> int:
        return dist.get_world_size()

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value` (plain values and CPU tensors), in rank order, on every rank."""
        values: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(values, value)
        return values

    def main_then_wait(self, write: Callable[[], None]) -> None:
        """`write()` on rank 0 only; every rank returns once it is done, and fails if it failed.

        The agreement doubles as the barrier, so a failed write on rank 0 is an error everywhere at
        once instead of the other ranks waiting out the timeout.
        """
        failure: Exception | None = None
        if dist.get_rank() == 0:
            try:
                write()
            except Exception as error:  # re-raised below, once the other ranks know
                failure = error
        if self.agree(failure is not None)[0]:
            if failure is not None:
                raise failure
            raise RuntimeError("Rank 0 failed to write a file the job depends on; its own error says why.")


# -- the training step ---------------------------------------------------------------------------


def sharded_train_step(
    ddp: torch.nn.Module, optimizer: torch.optim.Optimizer, task: Task, batch: Batch
) -> torch.Tensor:
    """The eager train step through DDP, with this shard's loss scaled to its share of the global batch.

    DDP averages gradients over ranks. With `n_k` of the global batch's `r` samples on rank `k` and
    `W` ranks, scaling rank `k`'s mean loss by `n_k * W / r` makes that average the gradient of the
    global batch's mean loss. A placeholder batch (`loss_scale == 0`: a rank with no sample in a short
    last batch) still runs forward and backward so every rank joins DDP's reduction, with zero gradient.
    """
    optimizer.zero_grad(set_to_none=True)
    outputs = call_module(ddp, batch.x)
    if batch.loss_scale == 0.0:
        zero = sum(leaf.sum() for leaf in flatten(outputs)) * 0.0
        zero.backward()  # type: ignore[union-attr]
        optimizer.step()
        return torch.zeros(len(task.log_keys()), device=flatten(outputs)[0].device)
    total, values = task.compute(outputs, batch.y, batch.sample_weight)
    (total if batch.loss_scale == 1.0 else total * batch.loss_scale).backward()
    optimizer.step()
    return values


# -- in-memory arrays ----------------------------------------------------------------------------


class ShardedArrays:
    """This rank's slice of every global batch of an `ArrayAdapter`; every rank runs `steps` steps.

    The epoch order is rank 0's `torch.randperm` (every rank draws one, so torch's generator advances
    as in a 1-process run, then rank 0's is broadcast). A global batch of `r` samples is split in
    rank order into parts of `r // W` or `r // W + 1` (the larger ones first); a rank whose part is
    empty gets a one-sample placeholder with `loss_scale=0`, which adds nothing to gradients or logs.
    """

    def __init__(self, arrays: ArrayAdapter, cluster: Cluster) -> None:
        self.arrays = arrays
        self.cluster = cluster
        self.steps = arrays.steps
        self.ran_dry = False

    @property
    def shuffle(self) -> bool:
        return self.arrays.shuffle

    def epoch_batches(self, epoch: int) -> Iterator[Batch]:
        arrays = self.arrays
        order = None
        if arrays.shuffle:
            order = self.cluster.broadcast(torch.randperm(arrays.num_samples).to(self.cluster.device))
            order = order.to(arrays._device())
        return self._batches(order)

    def _batches(self, order: torch.Tensor | None) -> Iterator[Batch]:
        arrays, world, me = self.arrays, self.cluster.world_size, self.cluster.rank
        size = arrays.batch_size
        parts = (arrays.x, arrays.y, arrays.sample_weight)
        for start in range(0, self.steps * size, size):
            stop = min(start + size, arrays.num_samples)
            lo, hi = _block(stop - start, world, me)
            scale = (hi - lo) * world / (stop - start)
            if hi == lo:  # placeholder: the global batch's last sample, contributing nothing
                lo, hi = stop - start - 1, stop - start
            if order is None:
                rows = [None if part is None else slice_rows(part, start + lo, start + hi) for part in parts]
            else:
                index = order[start + lo:start + hi]
                rows = [None if part is None else take(part, index) for part in parts]
            yield Batch(rows[0], rows[1], rows[2], loss_scale=scale)


def block_of(arrays: ArrayAdapter, cluster: Cluster) -> ArrayAdapter:
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
    lo, hi = _block(covered, cluster.world_size, cluster.rank)
    part = [None if p is None else slice_rows(p, lo, hi) for p in (arrays.x, arrays.y, arrays.sample_weight)]
    return ArrayAdapter(*part, num_samples=hi - lo,  # type: ignore[arg-type]
                        batch_size=arrays.batch_size // cluster.world_size, shuffle=False)


def _block(n: int, world: int, index: int) -> tuple[int, int]:
    """`[lo, hi)` of part `index` when `n` items are cut into `world` contiguous parts, larger first."""
    base, extra = divmod(n, world)
    lo = index * base + min(index, extra)
    return lo, lo + base + (1 if index < extra else 0)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _rebuild(loader: torch.utils.data.DataLoader, sampler: Iterable[int], batch_size: int) -> torch.utils.data.DataLoader:
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
