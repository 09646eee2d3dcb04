"""Set-up checks made at `compile` and again when `fit` starts: wrong set-ups that would train
without complaint (an optimizer over another module's parameters, a negative or NaN learning rate)."""

from __future__ import annotations

import torch

from epochal.callbacks.optimizer_lr import check_learning_rate


def check_optimizer(module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """`optimizer`, once its parameters are `module`'s and its learning rates finite and >= 0.

    An optimizer built over another module's parameters would update those and leave this module
    untouched: the loss would never move.
    """
    own = {id(parameter) for parameter in module.parameters()}
    foreign = [p for group in optimizer.param_groups for p in group["params"] if id(p) not in own]
    if foreign:
        shapes = ", ".join(str(tuple(p.shape)) for p in foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise ValueError(
            f"The optimizer holds {len(foreign)} parameter(s) that are not the module's (shapes {shapes}), so "
            "training would not change the module. Build it on this module's parameters, e.g. "
            "`torch.optim.Adam(model.module.parameters())`, or pass a name or a callable params -> Optimizer."
        )
    for index, group in enumerate(optimizer.param_groups):
        if "lr" in group:
            check_learning_rate(group["lr"], f"The optimizer's learning rate (`lr` of param group {index})")
    return optimizer
