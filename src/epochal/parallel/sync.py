"""How a pass reduces its logs across processes: exactly, as sums and counts, and agreed stop flags.

`LocalSync` is one process (everything is already global); `GroupSync` all-reduces over the default
process group. The loop and the training state call the same methods on either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist


class LocalSync:
    """One process: batch values, sums and stop flags are already global (see `distributed.GroupSync`)."""

    per_batch = False
    rank = 0
    world_size = 1

    def totals_only(self) -> LocalSync:
        return self

    def batch_values(self, values: torch.Tensor, weight: int) -> torch.Tensor:
        return values

    def totals(self, keys: tuple[str, ...], sums: torch.Tensor | None,
               count: int) -> tuple[tuple[str, ...], torch.Tensor | None, int]:
        return keys, sums, count

    def any(self, flag: bool) -> bool:
        return flag

    def agree(self, *flags: bool) -> tuple[bool, ...]:
        return flags

    def gather(self, value: Any) -> list[Any]:
        return [value]

    def main_then_wait(self, write: Callable[[], None]) -> None:
        write()


LOCAL = LocalSync()


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

    def totals(self, keys: tuple[str, ...], sums: torch.Tensor | None,
               count: int) -> tuple[tuple[str, ...], torch.Tensor | None, int]:
        """Every rank's sums and sample counts added up (a rank that saw no sample adds zeros, and
        learns the log names from the others)."""
        if self.any(not keys):
            keys = next((k for k in self.gather(keys) if k), keys)
        size = len(keys)
        local = torch.zeros(size + 1, dtype=torch.float64, device=self.device)
        if sums is not None:
            local[:-1] = sums
        local[-1] = count
        dist.all_reduce(local)
        total = int(local[-1].item())
        return keys, (local[:-1] if total else None), total

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
