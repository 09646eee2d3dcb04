"""Keras 3's Adagrad: accumulators start at 0.1 and epsilon sits inside the square root."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from epochal.optimizers.base import KerasOptimizer, Number, Params, checked
from epochal.optimizers.foreach import add_ratio_


class Adagrad(KerasOptimizer):
    """Keras 3's Adagrad: `a += g^2`, `p -= lr * g / sqrt(a + eps)`, each `a` starting at `initial_accumulator_value`.

    Args:
        params: The parameters (or torch param-group dicts) to train.
        learning_rate: The step size. Defaults to `0.001`.
        initial_accumulator_value: Where each accumulator starts, >= 0. Defaults to `0.1`.
        epsilon: Added under the square root. Defaults to `1e-7`.
        weight_decay: Keras's decoupled weight decay, `p -= lr * weight_decay * p`. Defaults to `None`.
    """

    hyperparameters = ("epsilon",)

    def __init__(self, params: Params, learning_rate: float = 0.001, initial_accumulator_value: float = 0.1,
                 epsilon: float = 1e-7, weight_decay: float | None = None) -> None:
        super().__init__(params, learning_rate, weight_decay, epsilon=checked("epsilon", epsilon),
                         initial_accumulator_value=checked("initial_accumulator_value", initial_accumulator_value))

    def slot_names(self, group: dict[str, Any]) -> tuple[str, ...]:
        return ("sum",)

    def init_slot(self, name: str, parameter: torch.Tensor, group: dict[str, Any]) -> torch.Tensor:
        return torch.full_like(parameter, group["initial_accumulator_value"], memory_format=torch.preserve_format)

    def update(self, params: list[torch.Tensor], grads: list[torch.Tensor], slots: list[list[torch.Tensor]],
               numbers: Sequence[Number], flags: Sequence[Any], scalars: Sequence[Number]) -> None:
        lr, _, epsilon = numbers
        (accumulators,) = slots
        torch._foreach_addcmul_(accumulators, grads, grads)
        add_ratio_(params, grads, torch._foreach_sqrt(torch._foreach_add(accumulators, epsilon)), -lr)
