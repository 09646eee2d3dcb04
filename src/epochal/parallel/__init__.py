"""Training across processes with torch.distributed: process facts, the cluster a Model trains on,
its share of the data and exact cross-rank reductions.

The functions here are the public API for scripts launched by torchrun (e.g. ending a script with
`epochal.parallel.barrier()`).
"""

from epochal.parallel.fully_sharded import FSDP
from epochal.parallel.process import (
    DEFAULT_TIMEOUT,
    barrier,
    init_process_group,
    is_distributed,
    is_main_process,
    launched_by_torchrun,
    local_rank,
    rank,
    world_size,
)

__all__ = ["DEFAULT_TIMEOUT", "FSDP", "barrier", "init_process_group", "is_distributed", "is_main_process",
           "launched_by_torchrun", "local_rank", "rank", "world_size"]
