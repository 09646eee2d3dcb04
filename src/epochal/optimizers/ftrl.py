"""Keras 3's FTRL-Proximal (McMahan et al., 2013), with its L1, L2 and L2-shrinkage regularisation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from epochal.optimizers.base import KerasOptimizer, Number, Params, checked


class Ftrl(KerasOptimizer):
    """Keras 3's FTRL: per entry, `n += g^2`, `z += g - (n^-k - n_old^-k) / lr * p` and
    `p = (clip(z, -l1, l1) - z) / (n^-k / lr + 2 * l2)`, with `k = learning_rate_power`.

    Its update raises the accumulators to the power `-learning_rate_power` and clips by `l1`, which
    `jit_compile` does not trace with changing numbers: a compiled fit runs it eagerly, after a warning.

    Args:
        params: The parameters (or torch param-group dicts) to train.
        learning_rate: The step size, > 0 (the update divides by it). Defaults to `0.001`.
        learning_rate_power: How the rate shrinks with the accumulated squares, <= 0. Defaults to `-0.5`.
        initial_accumulator_value: Where each accumulator starts, >= 0. Defaults to `0.1`.
        l1_regularization_strength: L1 strength, >= 0. Defaults to `0.0`.
        l2_regularization_strength: L2 (stabilisation) strength, >= 0. Defaults to `0.0`.
        l2_shrinkage_regularization_strength: L2 penalty added to the gradient, >= 0. Defaults to `0.0`.
        beta: The paper's beta, added to the L2 strength as `beta / (2 * lr)`. Defaults to `0.0`.
        weight_decay: Keras's decoupled weight decay, `p -= lr * weight_decay * p`. Defaults to `None`.
    """

    hyperparameters = ("learning_rate_power", "l1_regularization_strength", "l2_regularization_strength",
                       "l2_shrinkage_regularization_strength", "beta")
    compiles = False

    def __init__(self, params: Params, learning_rate: float = 0.001, learning_rate_power: float = -0.5,
                 initial_accumulator_value: float = 0.1, l1_regularization_strength: float = 0.0,
                 l2_regularization_strength: float = 0.0, l2_shrinkage_regularization_strength: float = 0.0,
                 beta: float = 0.0, weight_decay: float | None = None) -> None:
        super().__init__(
            params, checked("learning_rate", learning_rate, open_low=True), weight_decay,
            learning_rate_power=checked("learning_rate_power", learning_rate_power, -math.inf, 0.0),
            initial_accumulator_value=checked("initial_accumulator_value", initial_accumulator_value),
            l1_regularization_strength=checked("l1_regularization_strength", l1_regularization_strength),
            l2_regularization_strength=checked("l2_regularization_strength", l2_regularization_strength),
            l2_shrinkage_regularization_strength=checked("l2_shrinkage_regularization_strength",
                                                         l2_shrinkage_regularization_strength),
            beta=checked("beta", beta))

    def slot_names(self, group: dict[str, Any]) -> tuple[str, ...]:
        return ("accumulator", "linear")

    def init_slot(self, name: str, parameter: torch.Tensor, group: dict[str, Any]) -> torch.Tensor:
        if name == "accumulator":
            return torch.full_like(parameter, group["initial_accumulator_value"], memory_format=torch.preserve_format)
        return super().init_slot(name, parameter, group)

    def update(self, params: list[torch.Tensor], grads: list[torch.Tensor], slots: list[list[torch.Tensor]],
               numbers: Sequence[Number], flags: Sequence[Any], scalars: Sequence[Number]) -> None:
        lr, _, power, l1, l2, shrinkage, beta = (float(number) for number in numbers)  # eager only: floats
        if not lr:
            raise ValueError("Ftrl divides by the learning rate: it must be > 0. Received: lr=0")
        accumulators, linears = slots
        # Temporaries are updated in place (each new list is an allocation and a pass over memory more);
        # sums are written with their terms swapped where that saves one, which leaves every bit as it was.
        new_accumulators = torch._foreach_mul(grads, grads)
        torch._foreach_add_(new_accumulators, accumulators)
        new_powers = torch._foreach_pow(new_accumulators, -power)
        sigmas = torch._foreach_sub(new_powers, torch._foreach_pow(accumulators, -power))
        torch._foreach_div_(sigmas, lr)
        shifts = torch._foreach_mul(params, 2 * shrinkage)
        torch._foreach_add_(shifts, grads)
        torch._foreach_add_(linears, shifts)
        torch._foreach_mul_(sigmas, params)
        torch._foreach_sub_(linears, sigmas)
        quadratics = new_powers  # the powers are read for the last time here: reused in place
        torch._foreach_div_(quadratics, lr)
        torch._foreach_add_(quadratics, 2 * l2 + beta / lr)
        clipped = torch._foreach_clamp_min(linears, -l1)
        torch._foreach_clamp_max_(clipped, l1)
        torch._foreach_sub_(clipped, linears)
        torch._foreach_div_(clipped, quadratics)
        torch._foreach_copy_(params, clipped)
        torch._foreach_copy_(accumulators, new_accumulators)
