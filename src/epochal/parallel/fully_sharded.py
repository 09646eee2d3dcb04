"""Fully sharded data parallel: FSDP2 (`torch.distributed.fsdp.fully_shard`) as a distribution strategy, for
models whose weights, gradients and optimizer state do not fit one device.

Each rank keeps `1/W` of every parameter (a DTensor shard), and with it `1/W` of the gradients and of
the optimizer state. A unit's full weights are all-gathered just before its forward (and again before
its backward when `reshard_after_forward`), and its gradients are reduce-scattered — averaged over
the ranks — during the backward pass, so the optimizer updates only this rank's shard.

What stays as under DDP (`epochal.parallel.strategy.DataParallel`), so that `fit` means the same:
the global batch and its split, rank 0's starting weights (loaded into every rank's shards), rank 0's
buffers before every training forward, the exact loss and metric reductions. Compile options apply
unchanged: precision is the same autocast as in one process (so 2 ranks train like 1 within float
rounding), clipping sees the global gradients (DTensor norms are reduced across ranks), the loss
scaler's overflow check is reduced over the shards, `jit_compile=True` compiles each unit's forward
(the hooks run eagerly around it: a whole-step graph cannot hold them). What changes: gradients are
synced in every backward, so under gradient accumulation each micro-batch is reduce-scattered (FSDP
cannot hold unsharded gradients without holding unsharded memory); every forward is a collective, so every rank
runs the same number of evaluation batches (`epochal.parallel.sharding.Lockstep`); and the module's
state is saved as shards with torch.distributed.checkpoint (`epochal.parallel.sharded_state`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from epochal.parallel.strategy import ProcessGroupStrategy

_CONTAINERS = (torch.nn.Sequential, torch.nn.ModuleList, torch.nn.ModuleDict)


@dataclass(frozen=True)
class FSDP:
    """How `Model(module, distributed=FSDP(...))` shards the module (`distributed="fsdp"` takes the defaults).

    Args:
        shard: Which submodules become units of their own (each all-gathered for its own forward and
            backward, so that only one unit's full weights are in memory at a time): a tuple of module
            classes (e.g. a transformer's block class), or a callable `module -> bool`. The root module
            is always a unit, holding what no other unit took. Defaults to `None`: every child that
            holds parameters, looking inside `Sequential`, `ModuleList` and `ModuleDict` containers
            (a transformer's blocks, an MLP's layers) — the layout the torch docs recommend.
        reshard_after_forward: Free each unit's full weights after its forward and all-gather them
            again for its backward (less memory, one more all-gather per unit). Defaults to `True`.
        mixed_precision: A `torch.distributed.fsdp.MixedPrecisionPolicy` to all-gather the weights in
            a lower precision (less traffic and memory; the forward then runs in that dtype, which is
            not what one process computes). Defaults to `None`: the weights are gathered in float32
            and `compile(precision=...)`'s autocast chooses each op's precision, as in one process.
        cpu_offload: Keep the shards, their gradients and the optimizer state on the CPU and move each
            unit to the GPU only for its forward and backward (CUDA only). Defaults to `False`.

    Example:
        >>> from epochal.parallel import FSDP
        >>> FSDP(shard=(torch.nn.TransformerEncoderLayer,), reshard_after_forward=False)
        FSDP(shard=(<class 'torch.nn.modules.transformer.TransformerEncoderLayer'>,), reshard_after_forward=False, \
mixed_precision=None, cpu_offload=False)
    """

    shard: tuple[type[torch.nn.Module], ...] | Callable[[torch.nn.Module], bool] | None = None
    reshard_after_forward: bool = True
    mixed_precision: Any = None
    cpu_offload: bool = False

    def __post_init__(self) -> None:
        shard = self.shard
        if shard is not None and not callable(shard) and not (
                isinstance(shard, tuple) and shard and all(isinstance(k, type) and issubclass(k, torch.nn.Module)
                                                           for k in shard)):
            raise TypeError("`shard` must be a tuple of torch.nn.Module classes or a callable module -> bool. "
                            f"Received: shard={shard!r}")
        for name in ("reshard_after_forward", "cpu_offload"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"`{name}` must be a bool. Received: {name}={getattr(self, name)!r}")
        if self.mixed_precision is not None:
            from torch.distributed.fsdp import MixedPrecisionPolicy

            if not isinstance(self.mixed_precision, MixedPrecisionPolicy):
                raise TypeError("`mixed_precision` must be a torch.distributed.fsdp.MixedPrecisionPolicy or None. "
                                f"Received: mixed_precision={self.mixed_precision!r}")


class FullySharded(ProcessGroupStrategy):
    """The FSDP2 strategy: shards the module when the Model is made (see the module docstring)."""

    sharded = True

    def __init__(self, options: FSDP, device: torch.device) -> None:
        super().__init__(device)
        self.options = options
        self._units: list[torch.nn.Module] = []

    def distribute(self, module: torch.nn.Module, device: torch.device) -> None:
        """Shard each unit, then the root, with `fully_shard` (which moves one unit at a time to `device`, so the
        whole module never has to fit there), and start every rank from rank 0's weights and buffers."""
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

        if not any(p.requires_grad for p in module.parameters()):
            raise ValueError(
                f"distributed=\"fsdp\" shards a module's trainable parameters, and this {type(module).__name__} has "
                "none. Train it with distributed=\"ddp\" (or not distributed), or give it parameters to train."
            )
        if self.options.cpu_offload and device.type != "cuda":
            raise ValueError(f"FSDP(cpu_offload=True) moves shards between the CPU and a GPU, and this model trains on "
                             f"{device}. Received: cpu_offload=True with device={device}")
        initial = ({name: t.detach().clone() for name, t in module.state_dict().items()}
                   if torch.distributed.get_rank() == 0 else {})
        mesh = init_device_mesh(device.type, (self.world_size,))
        policy = self.options.mixed_precision or MixedPrecisionPolicy()
        offload = CPUOffloadPolicy() if self.options.cpu_offload else OffloadPolicy()
        self._units = units(module, self.options.shard)
        for unit in [*self._units, module]:
            fully_shard(unit, mesh=mesh, reshard_after_forward=self.options.reshard_after_forward, mp_policy=policy,
                        offload_policy=offload)
        module.to(device)  # buffers of modules no unit holds
        self._load(module, initial, broadcast=True)
        self._buffers = list(module.buffers())

    def setup(self, module: torch.nn.Module) -> None:
        """Nothing to do: the ranks' weights were made equal before sharding, and shards are each rank's own."""

    def compile_units(self, compile: Callable[[Callable[..., Any]], Callable[..., Any]] | None) -> bool:
        """`jit_compile` under FSDP: each unit's own forward compiled with `compile` (its all-gather and
        reduce-scatter hooks run around it, eagerly); None puts the eager forwards back."""
        for unit in self._units:
            unit.__dict__.pop("forward", None)  # the class's forward again
            if compile is not None:
                unit.forward = compile(unit.forward)  # type: ignore[method-assign]
        return compile is not None

    def sync_gradients(self, parameters: list[torch.nn.Parameter]) -> None:
        """Nothing to do: FSDP reduce-scattered (averaged) the gradients during the backward pass."""

    def full_state(self, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The whole weights and buffers, gathered on rank 0 in CPU memory (empty on the other ranks)."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return state  # type: ignore[return-value]  # tensors: a module's state holds nothing else

    def load_full_state(self, module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
        """Each rank takes its shards of a whole `state_dict()` (every rank passes the same one)."""
        self._load(module, state, broadcast=False)

    @staticmethod
    def _load(module: torch.nn.Module, state: dict[str, torch.Tensor], *, broadcast: bool) -> None:
        """Load a whole state into the shards; with `broadcast`, rank 0's (the others pass `{}`)."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=broadcast)
        set_model_state_dict(module, dict(state), options=options)  # type: ignore[arg-type]


def units(module: torch.nn.Module,
          shard: tuple[type[torch.nn.Module], ...] | Callable[[torch.nn.Module], bool] | None) -> list[torch.nn.Module]:
    """The submodules sharded as units of their own, innermost first (as `fully_shard` must be applied)."""
    if shard is not None:
        wanted: Callable[[torch.nn.Module], bool] = (
            (lambda m: isinstance(m, shard)) if isinstance(shard, tuple) else shard)  # type: ignore[arg-type]
        chosen = [m for m in module.modules() if m is not module and wanted(m) and _holds_parameters(m)]
        return list(reversed(chosen))
    return list(_children_with_parameters(module))


def _children_with_parameters(module: torch.nn.Module) -> Iterable[torch.nn.Module]:
    for child in module.children():
        if not _holds_parameters(child):
            continue
        if isinstance(child, _CONTAINERS):
            yield from _children_with_parameters(child)
        else:
            yield child


def _holds_parameters(module: torch.nn.Module) -> bool:
    return any(True for _ in module.parameters())
