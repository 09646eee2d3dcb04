"""Keras 3's Nadam: Adam with Nesterov momentum and Keras's momentum schedule `b1 * (1 - 0.5 * 0.96^t)`."""

from __future__ import annotations

import itertools
import operator
from collections.abc import Sequence
from typing import Any

import torch

from epochal.optimizers.base import Number
from epochal.optimizers.foreach import add_ratio_, add_scaled_, moving_average_, moving_square_average_
from epochal.optimizers.moments import AdaptiveMoments

#: `prod(1 - 0.5 * 0.96^k for k in 1..t)` for t = 0, 1, ...: past 1,100 steps the factors are 1.0 in float64.
_SCHEDULE_PRODUCTS = tuple(itertools.accumulate((1 - 0.5 * 0.96 ** k for k in range(1, 1101)), operator.mul,
                                                 initial=1.0))


def _momentum(beta_1: float, step: int) -> tuple[float, float]:
    """Keras's momentum at `step`, `u_t = b1 * (1 - 0.5 * 0.96^t)`, and the product of `u_1 ... u_t`."""
    product = beta_1 ** step * _SCHEDULE_PRODUCTS[min(step, len(_SCHEDULE_PRODUCTS) - 1)]
    return beta_1 * (1 - 0.5 * 0.96 ** step), product


class Nadam(AdaptiveMoments):
    """Keras 3's Nadam, with Keras's momentum schedule (torch's NAdam decays it 250x slower) and epsilon
    added to `sqrt(v_hat)`.

    Args:
        params: The parameters (or torch param-group dicts) to train.
        learning_rate: The step size. Defaults to `0.001`.
        beta_1: Decay of the first-moment estimate, in [0, 1). Defaults to `0.9`.
        beta_2: Decay of the second-moment estimate, in [0, 1). Defaults to `0.999`.
        epsilon: Added to `sqrt(v_hat)`. Defaults to `1e-7`.
        weight_decay: Keras's decoupled weight decay, `p -= lr * weight_decay * p`. Defaults to `None`.
    """

    def step_scalars(self, numbers: Sequence[float], step: int) -> tuple[float, ...]:
        """The weights of `m` and `g` in `lr * m_hat` and `1 / (1 - b2^t)`, Keras's bias corrections."""
        lr, _, beta_1, beta_2, _ = numbers
        u_now, product = _momentum(beta_1, step)
        u_next, _ = _momentum(beta_1, step + 1)
        return lr * u_next / (1 - product * u_next), lr * (1 - u_now) / (1 - product), 1 / (1 - beta_2 ** step)

    def update(self, params: list[torch.Tensor], grads: list[torch.Tensor], slots: list[list[torch.Tensor]],
               numbers: Sequence[Number], flags: Sequence[Any], scalars: Sequence[Number]) -> None:
        _, _, beta_1, beta_2, epsilon = numbers
        momentum_weight, gradient_weight, correction = scalars
        momentums, velocities = slots
        moving_average_(momentums, grads, beta_1)
        moving_square_average_(velocities, grads, beta_2)
        numerators = torch._foreach_mul(momentums, momentum_weight)
        add_scaled_(numerators, grads, gradient_weight)
        denominators = torch._foreach_mul(velocities, correction)  # then in place: no temporary list per op
        torch._foreach_sqrt_(denominators)
        torch._foreach_add_(denominators, epsilon)
        add_ratio_(params, numerators, denominators, -1.0)
