"""Keras 3's Adadelta: learning rate 0.001 and `rho=0.95`, epsilon inside both square roots."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from epochal.optimizers.base import KerasOptimizer, Number, Params, checked
from epochal.optimizers.foreach import add_scaled_, moving_square_average_


class Adadelta(KerasOptimizer):
    """Keras 3's Adadelta: `d = -sqrt(D + eps) / sqrt(G + eps) * g`, `p += lr * d`, with `G`, `D` decaying means.

    Args:
        params: The parameters (or torch param-group dicts) to train.
        learning_rate: Scales each step. Defaults to `0.001`.
        rho: Decay of the means of squared gradients and steps, in [0, 1). Defaults to `0.95`.
        epsilon: Added under both square roots. Defaults to `1e-7`.
        weight_decay: Keras's decoupled weight decay, `p -= lr * weight_decay * p`. Defaults to `None`.
    """

    hyperparameters = ("rho", "epsilon")

    def __init__(self, params: Params, learning_rate: float = 0.001, rho: float = 0.95, epsilon: float = 1e-7,
                 weight_decay: float | None = None) -> None:
        super().__init__(params, learning_rate, weight_decay, rho=checked("rho", rho, 0.0, 1.0, open_high=True),
                         epsilon=checked("epsilon", epsilon))

    def slot_names(self, group: dict[str, Any]) -> tuple[str, ...]:
        return ("square_avg", "acc_delta")

    def update(self, params: list[torch.Tensor], grads: list[torch.Tensor], slots: list[list[torch.Tensor]],
               numbers: Sequence[Number], flags: Sequence[Any], scalars: Sequence[Number]) -> None:
        lr, _, rho, epsilon = numbers
        squared_grads, squared_deltas = slots
        moving_square_average_(squared_grads, grads, rho)
        # In place on two fresh lists: each temporary list is one allocation and one pass over memory more.
        deltas = torch._foreach_add(squared_deltas, epsilon)
        torch._foreach_sqrt_(deltas)
        torch._foreach_mul_(deltas, grads)
        denominators = torch._foreach_add(squared_grads, epsilon)
        torch._foreach_sqrt_(denominators)
        torch._foreach_div_(deltas, denominators)
        moving_square_average_(squared_deltas, deltas, rho)
        add_scaled_(params, deltas, -lr)
