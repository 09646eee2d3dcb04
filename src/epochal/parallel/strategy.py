"""Distribution strategies: what changes when a Model trains on several processes — the module's starting
state, the gradient sync and the buffers — as a seam the one step pipeline calls, never a copy of the step.

`DataParallel` gives DDP's semantics without wrapping the module: rank 0's weights and buffers are
broadcast when training is set up (DDP's constructor), buffers again before each training forward
(DDP's `broadcast_buffers`), and each optimizer's gradients are averaged over the ranks right before
its update. Doing the sync at update time, not in backward hooks, is what lets every compile option
and a user's own `train_step` work unchanged: gradient accumulation syncs once per update (DDP's
`no_sync`), clipping sees the global gradients, several optimizers sync their own parameters, and
the compiled step traces the same all-reduce (torch's functional collectives). The cost: the
all-reduce does not overlap the backward pass, which matters for large models on fast networks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

import torch
import torch.distributed as dist

#: Gradients are all-reduced in flat buckets of at most this many bytes (DDP's default bucket size),
#: so the copy costs little memory and several buckets are in flight at once.
BUCKET_BYTES = 25 * 2**20


class Strategy(Protocol):
    """What the Model, the step pipeline and saving ask of a distribution strategy."""

    #: Whether the module's parameters are split over the ranks (FSDP): its state is then saved as shards,
    #: and a backward pass reaches every parameter's gradient through them only (not `inputs=`).
    sharded: bool

    def distribute(self, module: torch.nn.Module, device: torch.device) -> None:
        """Put the module on `device` when the Model is made: whole, or sharded (FSDP)."""

    def setup(self, module: torch.nn.Module) -> None:
        """Prepare for training when the Model is compiled (DDP makes every rank's copy rank 0's)."""

    def compile_units(self, compile: Callable[[Callable[..., Any]], Callable[..., Any]] | None) -> bool:
        """Compile parts of the module with `compile` (None: none) when the strategy's own hooks keep the whole
        step from being one graph; whether it did (the step then runs eagerly around them)."""

    def sync_gradients(self, parameters: list[torch.nn.Parameter]) -> None:
        """Make `parameters`' gradients the global batch's before an update."""

    def sync_buffers(self) -> None:
        """Make every rank's buffers rank 0's before a training forward."""

    def largest(self, value: float) -> float:
        """The largest of every rank's `value`."""

    def full_state(self, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The module's whole `state_dict()` where files are written (collective under FSDP)."""

    def load_full_state(self, module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
        """Load a whole `state_dict()` (every rank passes the same one)."""


class WholeModule:
    """A module kept whole in every process: its state is its `state_dict()`."""

    sharded = False

    def distribute(self, module: torch.nn.Module, device: torch.device) -> None:
        """The whole module on `device`."""
        module.to(device)

    def compile_units(self, compile: Callable[[Callable[..., Any]], Callable[..., Any]] | None) -> bool:
        """Nothing to do: `jit_compile` compiles the whole step, this strategy's sync included."""
        return False

    def full_state(self, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        return module.state_dict()

    def load_full_state(self, module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
        module.load_state_dict(state)


class SingleDevice(WholeModule):
    """One process: nothing to share or synchronise."""

    def setup(self, module: torch.nn.Module) -> None:
        """Nothing to do: the module is this process's own."""

    def sync_gradients(self, parameters: list[torch.nn.Parameter]) -> None:
        """Nothing to do: the gradients are already the whole batch's."""

    def sync_buffers(self) -> None:
        """Nothing to do: one process has one copy of the buffers."""

    def largest(self, value: float) -> float:
        """`value` itself: the only process's."""
        return value


class ProcessGroupStrategy(WholeModule):
    """What every strategy over the default process group shares: rank 0's buffers before each training
    forward, and agreed decisions."""

    def __init__(self, device: torch.device) -> None:
        self.world_size, self.device = dist.get_world_size(), device
        self._buffers: list[torch.Tensor] = []

    def sync_buffers(self) -> None:
        """Rank 0's buffers on every rank (BatchNorm's running statistics, ...)."""
        if self._buffers:
            with torch.no_grad():
                _broadcast(self._buffers)

    def largest(self, value: float) -> float:
        """The largest of every rank's `value`, so that a decision taken from it (a timing) is the same on
        every rank: ranks that decided differently would run different collectives and hang."""
        packed = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(packed, op=dist.ReduceOp.MAX)
        return float(packed.item())


class DataParallel(ProcessGroupStrategy):
    """Data-parallel training over the default process group, with DDP's semantics (module docstring)."""

    def setup(self, module: torch.nn.Module) -> None:
        """Start every rank from rank 0's weights and buffers."""
        self._buffers = list(module.buffers())
        with torch.no_grad():
            _broadcast([p.detach() for p in module.parameters()])
            _broadcast(self._buffers)

    def sync_gradients(self, parameters: list[torch.nn.Parameter]) -> None:
        """Average the gradients of `parameters` over the ranks, in place.

        Every rank must have gradients for the same parameters (as DDP requires); one without a
        gradient is left alone, as the optimizer will skip it.
        """
        import torch.distributed._functional_collectives as funcol  # here: ~0.15 s to import, and only a job needs it

        grads = [p.grad for p in parameters if p.grad is not None]
        reduced = [(bucket, funcol.all_reduce(_flat(bucket), "sum", _world()))
                   for bucket in _buckets(grads)]
        with torch.no_grad():
            for bucket, flat in reduced:
                _unflatten_into(bucket, flat / self.world_size)


def _broadcast(tensors: list[torch.Tensor]) -> None:
    """Rank 0's values of `tensors` on every rank, one collective per dtype."""
    import torch.distributed._functional_collectives as funcol

    for bucket in _buckets(tensors, limit=None):
        _unflatten_into(bucket, funcol.broadcast(_flat(bucket), 0, _world()))


def _world() -> dist.ProcessGroup:
    group = dist.group.WORLD
    assert group is not None, "the default process group is initialised before a strategy syncs"
    return group


def _buckets(tensors: Iterable[torch.Tensor], limit: int | None = BUCKET_BYTES) -> list[list[torch.Tensor]]:
    """`tensors` in groups of one dtype and device, each at most `limit` bytes (one tensor may exceed it)."""
    groups: dict[Any, list[list[torch.Tensor]]] = {}
    for tensor in tensors:
        buckets = groups.setdefault((tensor.dtype, tensor.device), [[]])
        size = sum(t.numel() * t.element_size() for t in buckets[-1])
        if limit is not None and buckets[-1] and size + tensor.numel() * tensor.element_size() > limit:
            buckets.append([])
        buckets[-1].append(tensor)
    return [bucket for buckets in groups.values() for bucket in buckets]


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _unflatten_into(tensors: list[torch.Tensor], flat: torch.Tensor) -> None:
    offset = 0
    for tensor in tensors:
        tensor.copy_(flat[offset:offset + tensor.numel()].view_as(tensor))
        offset += tensor.numel()
