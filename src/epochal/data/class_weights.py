"""`class_weight`: per-class multipliers turned into per-sample weights."""

from __future__ import annotations

from collections.abc import Mapping

import torch


def class_of(y: torch.Tensor) -> torch.Tensor:
    """Each sample's class: integer labels as they are, one-hot by argmax, binary `(N, 1)` rounded."""
    if y.ndim >= 2 and y.shape[-1] > 1:
        return y.argmax(dim=-1).reshape(y.shape[0], -1)[:, 0]
    flat = y.reshape(y.shape[0], -1)[:, 0]
    return flat.round().long() if flat.is_floating_point() else flat.long()


def class_sample_weights(y: torch.Tensor, class_weight: Mapping[int, float]) -> torch.Tensor:
    """One weight per sample from `class_weight`; a class in `y` without a weight is a ValueError.

    Reads the labels on the host once, so call it once per array (or per streamed batch).
    """
    classes = class_of(y)
    present = sorted(int(c) for c in torch.unique(classes).tolist())
    missing = [c for c in present if c not in class_weight]
    if missing:
        raise ValueError(
            f"`class_weight` has no weight for the classes {missing} found in `y`. "
            f"Received: class_weight={dict(class_weight)!r}"
        )
    table = torch.zeros(max(max(present), max(class_weight)) + 1, dtype=torch.float32)
    for key, weight in class_weight.items():
        table[int(key)] = float(weight)
    return table.to(y.device)[classes]
