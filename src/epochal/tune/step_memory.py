"""How much memory one training step of a batch takes, and whether it fits: on CUDA the allocator's
peak (running out is a no), on CPU the step's tensors on top of the process's resident memory,
against a budget."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import torch


class Steppable(Protocol):
    """What measuring a step uses of a compiled `epochal.Model`."""

    module: torch.nn.Module
    device: torch.device

    @property
    def optimizer(self) -> torch.optim.Optimizer | None: ...

    def train_on_batch(self, x: Any, y: Any = None) -> dict[str, float]: ...


@dataclass(frozen=True)
class StepMemory:
    """Whether a step fitted, and the bytes it took (CUDA: peak allocated; CPU: its tensors, of which
    `activations` grow with the batch)."""

    fits: bool
    bytes: int
    activations: int = 0


def measure_step(model: Steppable, x: Any, y: Any, budget: int | None) -> StepMemory:
    """Train one step on `(x, y)` (it updates the model: restore it after) and measure its memory."""
    device = model.device
    try:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            model.train_on_batch(x, y)
            used = torch.cuda.max_memory_allocated(device)
            return StepMemory(budget is None or used <= budget, used)
        activations, fixed = _cpu_step_bytes(model, x, y)
        used = activations + fixed
        return StepMemory(budget is None or resident_bytes() + used <= budget, used, activations)
    except torch.OutOfMemoryError:
        return StepMemory(False, 0)
    except RuntimeError as error:  # a CPU allocation that failed
        if "can't allocate memory" not in str(error):
            raise
        return StepMemory(False, 0)
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()


def default_budget(device: torch.device) -> int | None:
    """On CPU, what the process holds now plus half the memory still available; elsewhere None (an OOM decides)."""
    if device.type != "cpu":
        return None
    available = _available_bytes()
    return None if available is None else resident_bytes() + available // 2


def resident_bytes() -> int:
    """The process's resident memory (RSS) now; its peak so far where the system does not tell more."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # Windows: no way to ask without extra packages
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def _available_bytes() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cpu_step_bytes(model: Steppable, x: Any, y: Any) -> tuple[int, int]:
    """The activations autograd saves for one step, and the parameters, gradients and optimizer state."""
    saved = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model.train_on_batch(x, y)
    state = [t for s in model.optimizer.state.values() for t in s.values()]  # type: ignore[union-attr]
    return saved, 2 * _bytes(model.module.parameters()) + _bytes(state)


def _bytes(tensors: Iterable[Any]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))
