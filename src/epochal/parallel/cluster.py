"""The process group as one Model sees it: joining the job, placing the module, the data each rank
reads, and how passes reduce across ranks.

Under `torchrun` (or in a process whose default group is already initialised) `epochal.Model` trains
data-parallel with no change to the script:

- `batch_size` is the *global* batch: each of the `W` processes takes `batch_size / W` samples of it.
- Every rank draws the same epoch permutation (rank 0's, broadcast) and takes its slice of each
  global batch, so the updates equal a 1-process run with the same `batch_size`, up to float rounding.
- Loss and metric *sums and counts* are all-reduced, never means of means, so every rank sees the
  same logs, equal to a 1-process run's.
- Callbacks run on every rank with those logs; side effects (files, progress output) happen on rank
  0 only (`epochal.parallel.is_main_process`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist

from epochal.data.arrays import ArrayAdapter
from epochal.data.structure import Tree, concatenate
from epochal.parallel.fully_sharded import FSDP, FullySharded
from epochal.parallel.process import init_process_group, launched_by_torchrun, local_rank
from epochal.parallel.sharding import Lockstep, ShardedArrays, block, block_of, rebuild
from epochal.parallel.strategy import DataParallel
from epochal.parallel.sync import GroupSync

#: What `Model(distributed=...)` accepts.
Distributed = bool | str | FSDP | None


def connect(distributed: Distributed) -> Cluster | None:
    """The job this process belongs to, joining it if needed; None to train in this process alone.

    Args:
        distributed: `None` detects torchrun or an initialised group and trains data-parallel there;
            `True` or `"ddp"` requires one; `"fsdp"` or an `FSDP` shards the module over it (even
            over one process, so that sharded backups can be resumed there); `False` trains each
            process on its own.
    """
    sharding = sharding_of(distributed)
    if distributed is False:
        return None
    if not dist.is_available() or not (dist.is_initialized() or launched_by_torchrun()):
        if distributed is not None:
            raise RuntimeError(
                f"`distributed={distributed!r}` but this process is not part of a distributed job. Launch it with "
                "`torchrun --nproc_per_node=N script.py` (N=1 is fine), or call torch.distributed.init_process_group "
                "first."
            )
        return None
    init_process_group()
    if dist.get_world_size() == 1 and sharding is None:
        return None  # one process: identical to not being distributed, without the collectives
    return Cluster(sharding)


def sharding_of(distributed: Distributed) -> FSDP | None:
    """The FSDP options `distributed` asks for (None: data-parallel or not distributed); checks its value."""
    if isinstance(distributed, FSDP):
        return distributed
    if isinstance(distributed, str) and distributed.lower() == "fsdp":
        return FSDP()
    if distributed is None or isinstance(distributed, bool) or (
            isinstance(distributed, str) and distributed.lower() == "ddp"):
        return None
    raise ValueError(f"`distributed` must be None, True, False, \"ddp\", \"fsdp\" or an epochal.parallel.FSDP. "
                     f"Received: distributed={distributed!r}")


# -- the cluster a Model trains on --------------------------------------------------------------


class Cluster:
    """The default process group as one Model sees it: its device, its share of the data, its reductions
    and its strategy (`DataParallel`, or `FullySharded` with `sharding`)."""

    def __init__(self, sharding: FSDP | None = None) -> None:
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.is_main = self.rank == 0
        self.sharding = sharding
        self.device = torch.device("cpu")
        self.strategy: DataParallel | FullySharded = self._strategy()

    def _strategy(self) -> DataParallel | FullySharded:
        return FullySharded(self.sharding, self.device) if self.sharding is not None else DataParallel(self.device)

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
        self.strategy = self._strategy()
        return wanted

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
            samples = len(loader.dataset)  # type: ignore[arg-type]
            if samples < self.world_size:
                raise ValueError(f"Evaluating or predicting with {self.world_size} processes needs at least "
                                 f"{self.world_size} samples, one per process. Received: {samples} samples.")
            lo, hi = block(samples, self.world_size, self.rank)
            sampler = range(lo, hi)
        return rebuild(loader, sampler, local), True

    def evaluation(self, adapter: Any) -> Any:
        """`adapter` for an evaluation pass: in lockstep over the ranks under FSDP, whose forwards are collectives."""
        return Lockstep(adapter, GroupSync(self.device)) if self.strategy.sharded else adapter

    def broadcast(self, tensor: torch.Tensor) -> torch.Tensor:
        """Rank 0's `tensor` on every rank (same shape and dtype everywhere)."""
        dist.broadcast(tensor, src=0)
        return tensor

    # -- agreement --------------------------------------------------------------------------------

    def fit_sync(self, per_batch: bool) -> GroupSync:
        """How `fit` reduces across ranks; each batch's logs are the global batch's if any rank asks."""
        return GroupSync(self.device, per_batch=GroupSync(self.device).any(per_batch))

    def eval_sync(self) -> GroupSync:
        return GroupSync(self.device)

    def gather(self, outputs: Tree | None) -> Tree:
        """Every rank's predictions (contiguous blocks, in rank order) joined in sample order."""
        parts: list[Tree | None] = [None] * self.world_size
        dist.all_gather_object(parts, outputs)
        return concatenate([part for part in parts if part is not None])


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
