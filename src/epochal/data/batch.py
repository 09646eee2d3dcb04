"""The unit the loop consumes: one batch of inputs, targets and per-sample weights."""

from __future__ import annotations

from typing import NamedTuple

import torch

from epochal.data.structure import Tree, flatten


class Batch(NamedTuple):
    x: Tree
    y: Tree | None = None
    sample_weight: torch.Tensor | None = None

    @property
    def size(self) -> int:
        """Number of samples in the batch."""
        x = self.x
        return x.shape[0] if isinstance(x, torch.Tensor) else int(flatten(x)[0].shape[0])
