"""Reading and writing a param group's learning rate, whether it is a float or a tensor."""

from __future__ import annotations

import math
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


def check_learning_rate(value: Any, source: str) -> None:
    """A ValueError unless `value` is a finite number >= 0; `source` says where it came from."""
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{source} must be a finite number >= 0. Received: {number!r}")
