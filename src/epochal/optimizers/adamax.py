"""Keras 3's Adamax: Adam with the infinity norm; epsilon added to it, then the bias correction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from epochal.optimizers.base import Number
from epochal.optimizers.foreach import add_ratio_, moving_average_
from epochal.optimizers.moments import AdaptiveMoments


class Adamax(AdaptiveMoments):
    """Keras 3's Adamax: `u = max(b2 * u, |g|)`, `p -= lr / (1 - b1^t) * m / (u + eps)`.

    Args:
        params: The parameters (or torch param-group dicts) to train.
        learning_rate: The step size. Defaults to `0.001`.
        beta_1: Decay of the first-moment estimate, in [0, 1). Defaults to `0.9`.
        beta_2: Decay of the infinity norm, in [0, 1). Defaults to `0.999`.
        epsilon: Added to the norm. Defaults to `1e-7`.
        weight_decay: Keras's decoupled weight decay, `p -= lr * weight_decay * p`. Defaults to `None`.
    """

    def slot_names(self, group: dict[str, Any]) -> tuple[str, ...]:
        return ("exp_avg", "exp_inf")

    def step_scalars(self, numbers: Sequence[float], step: int) -> tuple[float, ...]:
        lr, _, beta_1 = numbers[:3]
        return (lr / (1 - beta_1 ** step),)

    def update(self, params: list[torch.Tensor], grads: list[torch.Tensor], slots: list[list[torch.Tensor]],
               numbers: Sequence[Number], flags: Sequence[Any], scalars: Sequence[Number]) -> None:
        _, _, beta_1, beta_2, epsilon = numbers
        (step_size,) = scalars
        momentums, norms = slots
        moving_average_(momentums, grads, beta_1)
        torch._foreach_mul_(norms, beta_2)
        # One temporary list, reused for the denominators: allocating a list the size of the parameters
        # costs several passes over memory on the CPU.
        temporaries = torch._foreach_abs(grads)
        torch._foreach_maximum_(norms, temporaries)
        torch._foreach_copy_(temporaries, norms)
        torch._foreach_add_(temporaries, epsilon)
        add_ratio_(params, momentums, temporaries, -step_size)
