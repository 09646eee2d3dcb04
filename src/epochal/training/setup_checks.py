"""Set-up checks made at `compile` and again when `fit` starts: wrong set-ups that would train
without complaint (an optimizer over another module's parameters, a negative or NaN learning rate)."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from epochal.callbacks.optimizer_lr import check_learning_rate
from epochal.optimizers import check_parameters


def check_optimizers(module: torch.nn.Module, optimizers: Mapping[str, torch.optim.Optimizer]) -> None:
    """The optimizers hold only `module`'s parameters, each once, and their learning rates are finite and >= 0.

    An optimizer built over another module's parameters would update those and leave this module
    untouched: the loss would never move. Checked at `compile` and again when a fit starts (a
    callback or the user may have changed a rate since).
    """
    check_parameters(optimizers, module)
    for name, optimizer in optimizers.items():
        owner = "The optimizer's" if len(optimizers) == 1 else f"Optimizer {name!r}'s"
        for index, group in enumerate(optimizer.param_groups):
            if "lr" in group:
                check_learning_rate(group["lr"], f"{owner} learning rate (`lr` of param group {index})")
