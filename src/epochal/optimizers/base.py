"""The base of Keras 3's optimizers in torch's form: one `step()` for every family, Keras's decoupled
weight decay, and the rule each family fills in — written once for the eager step and the compiled one.

A family's rule (`update`) is tensor math on lists of tensors (`torch._foreach_*`), in place. Eagerly
its numbers are floats; inside `jit_compile`'s graph (`epochal.step.functional_optim`) they are 0-dim
tensors, so a schedule changes them without recompiling — hence the rules use only ops that take
either (no `alpha=`). What depends on the step count (bias corrections) is computed on the host in
float64 (`step_scalars`) and handed to the rule, eagerly and compiled alike: inside a graph a scalar
`beta ** step` would be recomputed in every element's loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import torch

#: A number the rule reads: a float eagerly, a 0-dim tensor inside a compiled graph.
Number = float | torch.Tensor
Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]]


class KerasOptimizer(torch.optim.Optimizer):
    """A Keras 3 optimizer as a `torch.optim.Optimizer`: Keras's defaults and update, torch's layout.

    `param_groups` hold `lr` (the key torch's schedulers and epochal's callbacks set), `weight_decay`,
    `betas` (torch's key for Keras's `beta_1` and `beta_2`, so schedulers that cycle beta_1 work) and
    the family's other settings under Keras's names; `state[p]` holds the family's slots (tensors shaped
    like `p`, under torch's names for the same moments — `exp_avg`, `exp_avg_sq`, `momentum_buffer`... —
    and Keras's where torch has none) and, when the update depends on it, `step`: a float32 count on
    the CPU, as torch's optimizers keep it. `weight_decay` is Keras's decoupled form, `p -= lr * wd * p`
    before the update; 0 turns it off.

    A family defines `hyperparameters` (the group keys its update reads as numbers, after `lr` and
    `weight_decay`; a pair such as `betas` counts as two), `slot_names`, `flags` (settings that change
    the formula's structure), `update`, and `step_scalars` when `counts_steps`. `compiles` says whether
    `jit_compile` may trace `update`.
    """

    hyperparameters: ClassVar[tuple[str, ...]] = ()
    counts_steps: ClassVar[bool] = False
    compiles: ClassVar[bool] = True

    def __init__(self, params: Params, learning_rate: float, weight_decay: float | None, **settings: Any) -> None:
        decay = 0.0 if weight_decay is None else checked("weight_decay", weight_decay)
        super().__init__(params, {"lr": checked("learning_rate", learning_rate), "weight_decay": decay, **settings})

    # -- the rule ---------------------------------------------------------------------------

    def numbers(self, group: dict[str, Any]) -> tuple[float, ...]:
        """`lr`, `weight_decay` and the family's `hyperparameters` of `group`, as `update` reads them."""
        values = [group["lr"], group["weight_decay"]]
        for key in self.hyperparameters:
            value = group[key]
            if isinstance(value, (tuple, list)):
                values.extend(value)
            else:
                values.append(value)
        return tuple(values)

    def flags(self, group: dict[str, Any]) -> tuple[bool, ...]:
        """Whether weight decay applies, then the family's structural settings (a change recompiles)."""
        return (group["weight_decay"] != 0,)

    def slot_names(self, group: dict[str, Any]) -> tuple[str, ...]:
        """The state tensors each parameter of `group` needs, in the order `update` takes them."""
        return ()

    def init_slot(self, name: str, parameter: torch.Tensor, group: dict[str, Any]) -> torch.Tensor:
        """Slot `name`'s first value for `parameter`: zeros, as Keras starts them unless a family says."""
        return torch.zeros_like(parameter, memory_format=torch.preserve_format)

    def step_scalars(self, numbers: Sequence[float], step: int) -> tuple[float, ...]:
        """The numbers of update number `step` (1 for the first) that depend on it, from `numbers()`."""
        return ()

    def update(self, params: list[torch.Tensor], grads: list[torch.Tensor], slots: list[list[torch.Tensor]],
               numbers: Sequence[Number], flags: Sequence[Any], scalars: Sequence[Number]) -> None:
        """The family's update of `params` and their `slots` (one list per slot name), in place."""
        raise NotImplementedError

    def apply_update(self, params: list[torch.Tensor], grads: list[torch.Tensor], slots: list[list[torch.Tensor]],
                     numbers: Sequence[Number], flags: Sequence[Any], scalars: Sequence[Number]) -> None:
        """Keras's decoupled weight decay, then `update`: what `step()` and the compiled step both run."""
        self.decay(params, numbers, flags)
        self.update(params, grads, slots, numbers, flags, scalars)

    @staticmethod
    def decay(params: list[torch.Tensor], numbers: Sequence[Number], flags: Sequence[Any]) -> None:
        """Keras's weight decay, `p -= lr * weight_decay * p`, when `flags` say it applies."""
        if flags[0]:
            torch._foreach_mul_(params, 1 - numbers[0] * numbers[1])

    # -- state --------------------------------------------------------------------------------

    def slots_of(self, parameter: torch.Tensor, group: dict[str, Any]) -> list[torch.Tensor]:
        """`parameter`'s slots in `slot_names(group)` order, created (with its step count) when missing."""
        state = self.state[parameter]
        if self.counts_steps and "step" not in state:
            state["step"] = torch.zeros((), dtype=torch.float32)
        names = self.slot_names(group)
        for name in names:
            if name not in state:
                state[name] = self.init_slot(name, parameter, group)
        return [state[name] for name in names]

    def count_steps(self, params: list[torch.Tensor], steps: int) -> None:
        """Add `steps` updates to the step counts of `params` (host tensors: no device work)."""
        if self.counts_steps:
            torch._foreach_add_([self.state[p]["step"] for p in params], float(steps))

    # -- the eager step -----------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One update of every parameter that has a gradient (Keras skips those without, as torch does)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if any(p.grad.is_sparse for p in params):  # type: ignore[union-attr]
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients.")
            slots = [self.slots_of(p, group) for p in params]
            numbers, flags = self.numbers(group), self.flags(group)
            for step, positions in self._by_next_step(params):
                bucket = [params[i] for i in positions]
                columns = [list(column) for column in zip(*(slots[i] for i in positions))]
                self._update_bucket(bucket, [p.grad for p in bucket], columns, numbers, flags, step)  # type: ignore[misc]
        return loss

    def _update_bucket(self, params: list[torch.Tensor], grads: list[torch.Tensor], slots: list[list[torch.Tensor]],
                       numbers: tuple[float, ...], flags: tuple[Any, ...], step: int) -> None:
        """Update `params`, which all take their `step`-th update."""
        self.apply_update(params, grads, slots, numbers, flags, self.step_scalars(numbers, step))
        self.count_steps(params, 1)

    def _by_next_step(self, params: list[torch.Tensor]) -> Iterable[tuple[int, list[int]]]:
        """The positions of `params` by the number of their next update (one group unless some missed
        gradients: each parameter counts its own updates, as in torch)."""
        if not self.counts_steps:
            return [(1, list(range(len(params))))]
        steps = [int(self.state[p]["step"]) + 1 for p in params]
        if min(steps) == max(steps):
            return [(steps[0], list(range(len(params))))]
        buckets: dict[int, list[int]] = {}
        for position, step in enumerate(steps):
            buckets.setdefault(step, []).append(position)
        return buckets.items()


def checked(name: str, value: Any, low: float = 0.0, high: float = math.inf, *, open_low: bool = False,
            open_high: bool = False) -> float:
    """`value` as a float when it is a finite number in the range, else an error naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a number. Received: {name}={value!r}")
    above = low < value if open_low else low <= value
    below = value < high if open_high else value <= high
    if not (math.isfinite(value) and above and below):
        if high == math.inf:
            expected = f"a finite number {'>' if open_low else '>='} {low:g}"
        else:
            expected = f"in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
        raise ValueError(f"`{name}` must be {expected}. Received: {name}={value!r}")
    return float(value)


def checked_flag(name: str, value: Any) -> bool:
    """`value` when it is a bool, else a TypeError naming `name`."""
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be True or False. Received: {name}={value!r}")
    return value
