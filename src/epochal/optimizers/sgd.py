"""Keras 3's SGD: plain, with momentum, or Nesterov momentum, the learning rate inside the velocity."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from epochal.optimizers.base import KerasOptimizer, Number, Params, checked, checked_flag
from epochal.optimizers.foreach import add_scaled_


class SGD(KerasOptimizer):
    """Keras 3's SGD: `v = momentum * v - lr * g`, then `p += v` (Nesterov: `p += momentum * v - lr * g`).

    The velocity holds the learning rate, so a rate changed by a schedule scales only the steps after
    the change; torch's SGD keeps `v` without it and scales the whole velocity by the new rate. It is
    kept as `state[p]["momentum_buffer"]`, torch's name (with Keras's sign and scale).

    Args:
        params: The parameters (or torch param-group dicts) to train.
        learning_rate: The step size. Defaults to `0.01`.
        momentum: The velocity's decay, in [0, 1]; 0 is plain gradient descent. Defaults to `0.0`.
        nesterov: Nesterov momentum. Defaults to `False`.
        weight_decay: Keras's decoupled weight decay, `p -= lr * weight_decay * p`. Defaults to `None`.

    Example:
        >>> import torch
        >>> w = torch.nn.Parameter(torch.tensor([1.0]))
        >>> optimizer = SGD([w], learning_rate=0.1, momentum=0.9)
        >>> w.grad = torch.tensor([1.0]); optimizer.step(); optimizer.step()
        >>> round(w.item(), 4)  # 1 - 0.1, then - (0.9 * 0.1 + 0.1)
        0.71
    """

    hyperparameters = ("momentum",)

    def __init__(self, params: Params, learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float | None = None) -> None:
        super().__init__(params, learning_rate, weight_decay, momentum=checked("momentum", momentum, 0.0, 1.0),
                         nesterov=checked_flag("nesterov", nesterov))

    def flags(self, group: dict[str, Any]) -> tuple[bool, ...]:
        return (*super().flags(group), group["momentum"] != 0, bool(group["nesterov"]))

    def slot_names(self, group: dict[str, Any]) -> tuple[str, ...]:
        return ("momentum_buffer",) if group["momentum"] != 0 else ()

    def update(self, params: list[torch.Tensor], grads: list[torch.Tensor], slots: list[list[torch.Tensor]],
               numbers: Sequence[Number], flags: Sequence[Any], scalars: Sequence[Number]) -> None:
        lr, _, momentum = numbers
        _, has_momentum, nesterov = flags
        if not has_momentum:
            add_scaled_(params, grads, -lr)
            return
        (velocities,) = slots
        torch._foreach_mul_(velocities, momentum)
        add_scaled_(velocities, grads, -lr)
        if nesterov:
            add_scaled_(params, grads, -lr)
            add_scaled_(params, velocities, momentum)
        else:
            torch._foreach_add_(params, velocities)
