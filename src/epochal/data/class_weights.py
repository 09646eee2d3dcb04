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

    Reads the labels on the host once, so call it once per array (or per streamed batch).
    """
    classes = class_of(y)
    size = max(int(classes.max()) + 1 if classes.numel() else 0, max(class_weight, default=-1) + 1)
    table = torch.ones(size, dtype=torch.float32)
    for key, weight in class_weight.items():
        table[int(key)] = float(weight)
    return table.to(y.device)[classes]
