"""Learning rates: a param group's (a float or a tensor), the optimizers a callback sets, the logged rates."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from epochal.callbacks.callback import ModelView


def get_lr(group: dict[str, Any]) -> float:
    """The group's learning rate as a Python float."""
    return float(group["lr"])


def set_lr(group: dict[str, Any], value: float) -> None:
    """Set the group's learning rate in place; a tensor lr (capturable/fused optimizers) keeps its identity."""
    if isinstance(group["lr"], torch.Tensor):
        group["lr"].fill_(value)
    else:
        group["lr"] = float(value)


def learning_rates(optimizers: Mapping[str, torch.optim.Optimizer]) -> dict[str, float]:
    """The epoch logs' learning rates: `learning_rate` (first param group), or `<name>_learning_rate`
    for each optimizer when there are several."""
    if len(optimizers) == 1:
        return {"learning_rate": get_lr(next(iter(optimizers.values())).param_groups[0])}
    return {f"{name}_learning_rate": get_lr(opt.param_groups[0]) for name, opt in optimizers.items()}


def chosen_optimizers(model: ModelView, name: str | None, owner: str) -> list[torch.optim.Optimizer]:
    """The optimizers a learning-rate callback acts on: every one of the model's, or the one named."""
    optimizers = model.optimizers
    if name is None:
        return list(optimizers.values())
    if name not in optimizers:
        raise ValueError(f"{owner}: unknown optimizer {name!r}. The model's optimizers are "
                         f"{', '.join(map(repr, optimizers))}. Received: optimizer={name!r}")
    return [optimizers[name]]


def check_learning_rate(value: Any, source: str) -> None:
    """A ValueError unless `value` is a finite number >= 0; `source` says where it came from."""
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{source} must be a finite number >= 0. Received: {number!r}")
