"""Keras 3's RMSprop: `rho=0.9`, epsilon inside the square root, plain momentum on the scaled step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from epochal.optimizers.base import KerasOptimizer, Number, Params, checked, checked_flag
from epochal.optimizers.foreach import add_ratio_, moving_average_, moving_square_average_


class RMSprop(KerasOptimizer):
    """Keras 3's RMSprop: `v = rho * v + (1 - rho) * g^2`, `p -= lr * g / sqrt(v + eps)`.

    `centered=True` subtracts the squared mean gradient inside the root; with `momentum`, the scaled
    step `lr * g / sqrt(...)` feeds a velocity that updates `p` (the rate inside it, as Keras).

    Args:
        params: The parameters (or torch param-group dicts) to train.
        learning_rate: The step size. Defaults to `0.001`.
        rho: Decay of the mean squared gradient, in [0, 1). Defaults to `0.9`.
        momentum: Decay of the velocity, in [0, 1]; 0 for none. Defaults to `0.0`.
        epsilon: Added under the square root. Defaults to `1e-7`.
        centered: Divide by the gradient's estimated variance instead. Defaults to `False`.
        weight_decay: Keras's decoupled weight decay, `p -= lr * weight_decay * p`. Defaults to `None`.
    """

    hyperparameters = ("rho", "momentum", "epsilon")

    def __init__(self, params: Params, learning_rate: float = 0.001, rho: float = 0.9, momentum: float = 0.0,
                 epsilon: float = 1e-7, centered: bool = False, weight_decay: float | None = None) -> None:
        super().__init__(params, learning_rate, weight_decay, rho=checked("rho", rho, 0.0, 1.0, open_high=True),
                         momentum=checked("momentum", momentum, 0.0, 1.0), epsilon=checked("epsilon", epsilon),
                         centered=checked_flag("centered", centered))

    def flags(self, group: dict[str, Any]) -> tuple[bool, ...]:
        return (*super().flags(group), group["momentum"] != 0, bool(group["centered"]))

    def slot_names(self, group: dict[str, Any]) -> tuple[str, ...]:
        return ("square_avg", *(("momentum_buffer",) if group["momentum"] != 0 else ()),
                *(("grad_avg",) if group["centered"] else ()))

    def update(self, params: list[torch.Tensor], grads: list[torch.Tensor], slots: list[list[torch.Tensor]],
               numbers: Sequence[Number], flags: Sequence[Any], scalars: Sequence[Number]) -> None:
        lr, _, rho, momentum, epsilon = numbers
        _, has_momentum, centered = flags
        squares, *rest = slots
        moving_square_average_(squares, grads, rho)
        denominators = torch._foreach_add(squares, epsilon)
        if centered:
            averages = rest[-1]
            moving_average_(averages, grads, rho)
            torch._foreach_addcmul_(denominators, averages, averages, value=-1)
        torch._foreach_sqrt_(denominators)
        if not has_momentum:
            add_ratio_(params, grads, denominators, -lr)
            return
        velocities = rest[0]
        torch._foreach_mul_(velocities, momentum)
        add_ratio_(velocities, grads, denominators, lr)
        torch._foreach_sub_(params, velocities)
