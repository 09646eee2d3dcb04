"""Keras 3's Adafactor: second moments factored into row and column means for matrices (Shazeer & Stern, 2018)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from epochal.optimizers.base import KerasOptimizer, Number, Params, checked, checked_flag


class Adafactor(KerasOptimizer):
    """Keras 3's Adafactor: a tensor of 2 or more dimensions keeps running means of `g^2 + eps_1` over its
    last two axes (`r`, `c`) instead of a full second moment; steps are RMS-clipped and scaled by
    `max(eps_2, rms(p)) * min(lr, 1 / sqrt(t))`.

    Args:
        params: The parameters (or torch param-group dicts) to train.
        learning_rate: Caps the relative step size `1 / sqrt(t)`. Defaults to `0.001`.
        beta_2_decay: The second moments' decay is `1 - t^beta_2_decay`; <= 0. Defaults to `-0.8`.
        epsilon_1: Added to the squared gradient. Defaults to `1e-30`.
        epsilon_2: The smallest parameter RMS a step scales by. Defaults to `1e-3`.
        clip_threshold: Steps whose RMS exceeds it are scaled down to it; > 0. Defaults to `1.0`.
        relative_step: Kept for Keras's signature; as in Keras 3, the step size is
            `min(lr, 1 / sqrt(t))` either way. Defaults to `True`.
        weight_decay: Keras's decoupled weight decay, `p -= lr * weight_decay * p`. Defaults to `None`.
    """

    hyperparameters = ("beta_2_decay", "epsilon_1", "epsilon_2", "clip_threshold")
    counts_steps = True

    def __init__(self, params: Params, learning_rate: float = 0.001, beta_2_decay: float = -0.8,
                 epsilon_1: float = 1e-30, epsilon_2: float = 1e-3, clip_threshold: float = 1.0,
                 relative_step: bool = True, weight_decay: float | None = None) -> None:
        super().__init__(params, learning_rate, weight_decay,
                         beta_2_decay=checked("beta_2_decay", beta_2_decay, -math.inf, 0.0),
                         epsilon_1=checked("epsilon_1", epsilon_1), epsilon_2=checked("epsilon_2", epsilon_2),
                         clip_threshold=checked("clip_threshold", clip_threshold, open_low=True),
                         relative_step=checked_flag("relative_step", relative_step))

    def slot_names(self, group: dict[str, Any]) -> tuple[str, ...]:
        return ("row_var", "col_var", "variance")

    def init_slot(self, name: str, parameter: torch.Tensor, group: dict[str, Any]) -> torch.Tensor:
        """Zeros: `variance` shaped like the parameter; `row_var` and `col_var` without its last or
        second-to-last axis (0-dim placeholders for a parameter of fewer than 2 dimensions, as Keras keeps)."""
        if name == "variance":
            return super().init_slot(name, parameter, group)
        if parameter.dim() < 2:
            return parameter.new_zeros(())
        shape = parameter.shape[:-1] if name == "row_var" else (*parameter.shape[:-2], parameter.shape[-1])
        return parameter.new_zeros(shape)

    def step_scalars(self, numbers: Sequence[float], step: int) -> tuple[float, ...]:
        """The relative step size `min(lr, 1 / sqrt(t))` and the second moments' decay `1 - t^beta_2_decay`."""
        lr, _, beta_2_decay = numbers[:3]
        return min(lr, 1 / math.sqrt(step)), 1 - step ** beta_2_decay

    def update(self, params: list[torch.Tensor], grads: list[torch.Tensor], slots: list[list[torch.Tensor]],
               numbers: Sequence[Number], flags: Sequence[Any], scalars: Sequence[Number]) -> None:
        """Per tensor (its means and RMS are over that tensor): a loop over parameters, not elements."""
        epsilon_1, epsilon_2, clip_threshold = numbers[3:]
        relative_step, decay = scalars
        for param, grad, row, column, second in zip(params, grads, *slots):
            scale = torch.clamp(_rms(param), min=epsilon_2) * relative_step
            squared = grad * grad + epsilon_1
            if param.dim() >= 2:
                row.mul_(decay).add_(squared.mean(-1) * (1 - decay))
                column.mul_(decay).add_(squared.mean(-2) * (1 - decay))
                second.copy_((row / row.mean(-1, keepdim=True)).unsqueeze(-1) * column.unsqueeze(-2))
            else:
                second.mul_(decay).add_(squared * (1 - decay))
            step = grad / second.sqrt()
            param.sub_(step / torch.clamp(_rms(step) / clip_threshold, min=1.0) * scale)


def _rms(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.square().mean().sqrt()
