"""The few in-place list updates the optimizers' rules are made of, for a float or a 0-dim tensor scale.

With a float (the eager step) each is one fused `torch._foreach_*` call (`alpha=`, `value=`, lerp),
which saves a temporary list and a pass over memory per update on the CPU; with a tensor (inside a
compiled graph, where a schedule may change it) it is written with the ops that accept tensors,
and the compiler fuses them anyway. The maths is the same either way.
"""

from __future__ import annotations

import torch

Tensors = list[torch.Tensor] | tuple[torch.Tensor, ...]  # what torch's foreach ops take


def add_scaled_(targets: Tensors, values: Tensors, scale: float | torch.Tensor) -> None:
    """`targets += scale * values`."""
    if isinstance(scale, torch.Tensor):
        torch._foreach_add_(targets, torch._foreach_mul(values, scale))
    else:
        torch._foreach_add_(targets, values, alpha=scale)


def add_ratio_(targets: Tensors, numerators: Tensors, denominators: Tensors, scale: float | torch.Tensor) -> None:
    """`targets += scale * numerators / denominators`."""
    if isinstance(scale, torch.Tensor):
        torch._foreach_add_(targets, torch._foreach_mul(torch._foreach_div(numerators, denominators), scale))
    else:
        torch._foreach_addcdiv_(targets, numerators, denominators, value=scale)


def moving_average_(averages: Tensors, values: Tensors, decay: float | torch.Tensor) -> None:
    """`averages = decay * averages + (1 - decay) * values`."""
    if isinstance(decay, torch.Tensor):
        torch._foreach_mul_(averages, decay)
        torch._foreach_add_(averages, torch._foreach_mul(values, 1 - decay))
    else:
        torch._foreach_lerp_(averages, values, 1 - decay)


def moving_square_average_(averages: Tensors, values: Tensors, decay: float | torch.Tensor) -> None:
    """`averages = decay * averages + (1 - decay) * values ** 2`."""
    torch._foreach_mul_(averages, decay)
    if isinstance(decay, torch.Tensor):
        torch._foreach_add_(averages, torch._foreach_mul(torch._foreach_mul(values, values), 1 - decay))
    else:
        torch._foreach_addcmul_(averages, values, values, value=1 - decay)
