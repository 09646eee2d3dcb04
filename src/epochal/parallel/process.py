"""Process facts of a torch.distributed job: joining it, this process's rank, and waiting for the others.

A leaf: it imports nothing of epochal, so any layer may ask "am I rank 0?" (callbacks writing files
do) or wait at a `barrier()`.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

#: How long a collective (or joining the group) may wait for a peer before it is an error, not a hang.
DEFAULT_TIMEOUT = timedelta(minutes=10)


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
    store, rank, world = next(dist.rendezvous("env://", timeout=timeout))
    # Each restart of an elastic job (torchrun --max-restarts) gets keys of its own: the store outlives the
    # processes, and a restarted rank that read a dead one's address would wait for it in vain.
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    dist.init_process_group(backend, store=dist.PrefixStore(f"epochal/attempt-{attempt}", store), rank=rank,
                            world_size=world, timeout=timeout)
