"""Keras 3's Adam and AdamW: epsilon added to `sqrt(v)` before the bias correction, as Keras does.

Keras's update, `p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)`, is torch's Adam with
the epsilon `eps / sqrt(1 - b2^t)`, which changes with the step: so the eager step runs torch's own
kernel with that epsilon (fused on the CPU, where it is one pass, but not on FSDP's sharded parameters;
foreach elsewhere, where torch keeps the step counts on the host as this does), and `update` — what the
compiled step traces — is torch's formula with the same step scalars.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch.optim.adam import adam as torch_adam

from epochal.dtensors import is_sharded
from epochal.optimizers.base import Number, Params, checked_flag
from epochal.optimizers.foreach import add_ratio_, moving_average_, moving_square_average_
from epochal.optimizers.moments import AdaptiveMoments


class Adam(AdaptiveMoments):
    """Keras 3's Adam (`amsgrad=True`: AMSGrad), with Keras's epsilon placement and defaults.

    Args:
        params: The parameters (or torch param-group dicts) to train.
        learning_rate: The step size. Defaults to `0.001`.
        beta_1: Decay of the first-moment estimate, in [0, 1). Defaults to `0.9`.
        beta_2: Decay of the second-moment estimate, in [0, 1). Defaults to `0.999`.
        epsilon: Added to `sqrt(v)`, before the bias correction. Defaults to `1e-7`.
        amsgrad: Divide by the largest second moment seen. Defaults to `False`.
        weight_decay: Keras's decoupled weight decay, `p -= lr * weight_decay * p`. Defaults to `None`.
    """

    def __init__(self, params: Params, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, amsgrad: bool = False, weight_decay: float | None = None) -> None:
        super().__init__(params, learning_rate, beta_1, beta_2, epsilon, weight_decay,
                         amsgrad=checked_flag("amsgrad", amsgrad))

    def flags(self, group: dict[str, Any]) -> tuple[bool, ...]:
        return (*super().flags(group), bool(group["amsgrad"]))

    def slot_names(self, group: dict[str, Any]) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if group["amsgrad"] else ("exp_avg", "exp_avg_sq")

    def step_scalars(self, numbers: Sequence[float], step: int) -> tuple[float, ...]:
        """torch's step size `lr / (1 - b1^t)`, its correction `sqrt(1 - b2^t)`, and Keras's epsilon rescaled."""
        lr, _, beta_1, beta_2, epsilon = numbers
        correction = math.sqrt(1 - beta_2 ** step)
        return lr / (1 - beta_1 ** step), correction, epsilon / correction

    def update(self, params: list[torch.Tensor], grads: list[torch.Tensor], slots: list[list[torch.Tensor]],
               numbers: Sequence[Number], flags: Sequence[Any], scalars: Sequence[Number]) -> None:
        _, _, beta_1, beta_2, _ = numbers
        step_size, correction, epsilon = scalars
        momentums, velocities, *largest = slots
        moving_average_(momentums, grads, beta_1)
        moving_square_average_(velocities, grads, beta_2)
        if largest:
            torch._foreach_maximum_(largest[0], velocities)
            velocities = largest[0]
        denominators = torch._foreach_add(torch._foreach_div(torch._foreach_sqrt(velocities), correction), epsilon)
        add_ratio_(params, momentums, denominators, -step_size)

    def _update_bucket(self, params: list[torch.Tensor], grads: list[torch.Tensor], slots: list[list[torch.Tensor]],
                       numbers: tuple[float, ...], flags: tuple[Any, ...], step: int) -> None:
        """torch's Adam kernel with Keras's epsilon for this step; it counts the step itself."""
        self.decay(params, numbers, flags)
        lr, _, beta_1, beta_2, _ = numbers
        momentums, velocities, *largest = slots
        fused = all(p.device.type == "cpu" and p.is_floating_point() and not is_sharded(p) for p in params)
        torch_adam(params, grads, momentums, velocities, largest[0] if largest else [],
                   [self.state[p]["step"] for p in params], foreach=not fused, fused=fused, amsgrad=bool(largest),
                   beta1=beta_1, beta2=beta_2, lr=lr, weight_decay=0.0, eps=self.step_scalars(numbers, step)[2],
                   maximize=False)


class AdamW(Adam):
    """Keras 3's AdamW: Adam with decoupled weight decay on by default (`weight_decay=0.004`).

    Args:
        params: The parameters (or torch param-group dicts) to train.
        learning_rate: The step size. Defaults to `0.001`.
        weight_decay: Decoupled weight decay, `p -= lr * weight_decay * p` before each update. Defaults to `0.004`.
        beta_1: Decay of the first-moment estimate, in [0, 1). Defaults to `0.9`.
        beta_2: Decay of the second-moment estimate, in [0, 1). Defaults to `0.999`.
        epsilon: Added to `sqrt(v)`, before the bias correction. Defaults to `1e-7`.
        amsgrad: Divide by the largest second moment seen. Defaults to `False`.
    """

    def __init__(self, params: Params, learning_rate: float = 0.001, weight_decay: float = 0.004,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7, amsgrad: bool = False) -> None:
        if weight_decay is None:
            raise ValueError("AdamW needs a `weight_decay` (a number >= 0). Received: weight_decay=None")
        super().__init__(params, learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay)
