"""Keras 3's Lamb: Adam's step scaled per tensor by the trust ratio `||p|| / ||step||` (You et al., 2019)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from epochal.optimizers.base import Number
from epochal.optimizers.foreach import add_scaled_, moving_average_, moving_square_average_
from epochal.optimizers.moments import AdaptiveMoments


class Lamb(AdaptiveMoments):
    """Keras 3's Lamb: `s = m_hat / (sqrt(v_hat) + eps)`, `p -= lr * ||p|| / ||s|| * s` (ratio 1 when a norm is 0).

    Args:
        params: The parameters (or torch param-group dicts) to train.
        learning_rate: The step size. Defaults to `0.001`.
        beta_1: Decay of the first-moment estimate, in [0, 1). Defaults to `0.9`.
        beta_2: Decay of the second-moment estimate, in [0, 1). Defaults to `0.999`.
        epsilon: Added to `sqrt(v_hat)`. Defaults to `1e-7`.
        weight_decay: Keras's decoupled weight decay, `p -= lr * weight_decay * p`. Defaults to `None`.
    """

    def step_scalars(self, numbers: Sequence[float], step: int) -> tuple[float, ...]:
        """The bias corrections `1 / (1 - b1^t)` and `1 / (1 - b2^t)`."""
        _, _, beta_1, beta_2, _ = numbers
        return 1 / (1 - beta_1 ** step), 1 / (1 - beta_2 ** step)

    def update(self, params: list[torch.Tensor], grads: list[torch.Tensor], slots: list[list[torch.Tensor]],
               numbers: Sequence[Number], flags: Sequence[Any], scalars: Sequence[Number]) -> None:
        lr, _, beta_1, beta_2, epsilon = numbers
        first_correction, second_correction = scalars
        momentums, velocities = slots
        moving_average_(momentums, grads, beta_1)
        moving_square_average_(velocities, grads, beta_2)
        denominators = torch._foreach_mul(velocities, second_correction)  # then in place: no temporary list per op
        torch._foreach_sqrt_(denominators)
        torch._foreach_add_(denominators, epsilon)
        steps = torch._foreach_mul(momentums, first_correction)
        torch._foreach_div_(steps, denominators)
        ratios = [torch.where((w > 0) & (s > 0), w / s, 1.0)
                  for w, s in zip(torch._foreach_norm(params), torch._foreach_norm(steps))]
        torch._foreach_mul_(steps, ratios)
        add_scaled_(params, steps, -lr)
