"""The unit the loop consumes: one batch of inputs, targets and per-sample weights."""

from __future__ import annotations

from typing import NamedTuple

import torch

from epochal.data.structure import Tree, flatten


class Batch(NamedTuple):
    """One batch. `loss_scale` is only set by distributed training (see `epochal.parallel`): the
    factor that makes DDP's mean of per-rank gradients the global batch's gradient; 0 marks a
    placeholder that only keeps a rank in step and counts for nothing."""

    x: Tree
    y: Tree | None = None
    sample_weight: torch.Tensor | None = None
    loss_scale: float = 1.0

    @property
    def size(self) -> int:
        """Number of samples in the batch."""
        x = self.x
        return x.shape[0] if isinstance(x, torch.Tensor) else int(flatten(x)[0].shape[0])

    @property
    def weight(self) -> int:
        """Number of samples the batch's values stand for in epoch means (0 for a placeholder)."""
        return 0 if self.loss_scale == 0.0 else self.size
