"""Keras 3's Lion: the sign of an interpolated momentum as the step (Chen et al., 2023)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from epochal.optimizers.base import KerasOptimizer, Number, Params, checked
from epochal.optimizers.foreach import add_scaled_, moving_average_


class Lion(KerasOptimizer):
    """Keras 3's Lion: `p -= lr * sign(b1 * m + (1 - b1) * g)`, then `m = b2 * m + (1 - b2) * g`.

    Args:
        params: The parameters (or torch param-group dicts) to train.
        learning_rate: The step size (Lion's steps are +-1 per entry: use a small one). Defaults to `0.001`.
        beta_1: Weight of the momentum in the step's sign, in (0, 1]. Defaults to `0.9`.
        beta_2: Decay of the momentum, in [0, 1]. Defaults to `0.99`.
        weight_decay: Keras's decoupled weight decay, `p -= lr * weight_decay * p`. Defaults to `None`.
    """

    hyperparameters = ("betas",)

    def __init__(self, params: Params, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.99,
                 weight_decay: float | None = None) -> None:
        super().__init__(params, learning_rate, weight_decay,
                         betas=(checked("beta_1", beta_1, 0.0, 1.0, open_low=True), checked("beta_2", beta_2, 0.0, 1.0)))

    def slot_names(self, group: dict[str, Any]) -> tuple[str, ...]:
        return ("exp_avg",)

    def update(self, params: list[torch.Tensor], grads: list[torch.Tensor], slots: list[list[torch.Tensor]],
               numbers: Sequence[Number], flags: Sequence[Any], scalars: Sequence[Number]) -> None:
        lr, _, beta_1, beta_2 = numbers
        (momentums,) = slots
        directions = torch._foreach_mul(momentums, beta_1)
        add_scaled_(directions, grads, 1 - beta_1)
        torch._foreach_sign_(directions)
        add_scaled_(params, directions, -lr)
        moving_average_(momentums, grads, beta_2)
