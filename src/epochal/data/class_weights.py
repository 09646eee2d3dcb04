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
    """One weight per sample from `class_weight`; a class it does not name weighs 1.0 (Keras).

    Looks each label up among the named classes (a sorted search), so neither a large class id nor a
    wild label allocates a table as long as its value (`{10**9: 2.0}` took 4 GB).
    """
    classes = class_of(y)
    if not class_weight:
        return torch.ones(classes.shape, dtype=torch.float32, device=y.device)
    named = sorted(class_weight)
    keys = torch.tensor(named, dtype=torch.long, device=y.device)
    values = torch.tensor([float(class_weight[key]) for key in named], dtype=torch.float32, device=y.device)
    position = torch.searchsorted(keys, classes).clamp(max=len(named) - 1)
    return torch.where(keys[position] == classes, values[position], torch.ones_like(values[position]))
