"""Reading and writing a param group's learning rate, whether it is a float or a tensor."""

from __future__ import annotations

from typing import Any

import torch


def get_lr(group: dict[str, Any]) -> float:
    """The group's learning rate as a Python float."""
    return float(group["lr"])


def set_lr(group: dict[str, Any], value: float) -> None:
    """Set the group's learning rate in place; a tensor lr (capturable/fused optimizers) keeps its identity."""
    if isinstance(group["lr"], torch.Tensor):
        group["lr"].fill_(value)
    else:
        group["lr"] = float(value)
