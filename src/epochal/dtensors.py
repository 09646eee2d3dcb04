"""Tensors that may be DTensor shards (FSDP's parameters): asking about them without importing
torch.distributed.tensor when nothing distributed is loaded."""

from __future__ import annotations

import sys
from collections.abc import Iterable

import torch


def is_sharded(tensor: torch.Tensor) -> bool:
    """Whether `tensor` is a DTensor (an FSDP shard), which torch's fused optimizer kernels cannot update."""
    dtensor = sys.modules.get("torch.distributed.tensor")  # loaded by FSDP; never imported only to ask
    return dtensor is not None and isinstance(tensor, dtensor.DTensor)


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether every element of the floating-point `tensors` is finite, in one host sync.

    Shards are checked whole, over every rank: a collective, so every rank asks about the same tensors.
    """
    flags = []
    for tensor in tensors:
        if not torch.is_floating_point(tensor):
            continue
        flag = torch.isfinite(tensor).all()
        flags.append(flag.full_tensor() if is_sharded(flag) else flag)  # type: ignore[attr-defined]
    return bool(torch.stack(flags).all()) if flags else True
