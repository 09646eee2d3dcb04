"""Where in-memory training data stands between epochs: the current pass's order and its batches done.

Without `steps_per_epoch` an epoch is one whole pass over the data. With it, training continues
where the last epoch stopped, as Keras does: each epoch takes the next `steps` batches of the pass,
an epoch that reaches the end of the data ends there (shorter, as Keras's), and the next epoch
starts a new pass, reshuffled when `shuffle=True`. The position is part of a backup, so a resumed
run continues from the same place.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch


class PassCursor:
    """The batches each epoch takes from passes over `num_samples` rows cut into batches of `batch_size`.

    Args:
        num_samples: Rows in the data.
        batch_size: Rows per batch (the last batch of a pass may be short).
        steps: Batches per epoch at most.
        shuffle: Whether each pass draws a new order.
        carry_over: Whether an epoch continues the pass the last one left (training with
            `steps_per_epoch`); otherwise every epoch starts a new pass (validation, evaluation).
    """

    def __init__(self, num_samples: int, batch_size: int, steps: int, *, shuffle: bool, carry_over: bool) -> None:
        self.batches_per_pass = math.ceil(num_samples / batch_size)
        self.steps, self.shuffle, self.carry_over = steps, shuffle, carry_over
        self.position = 0  # batches of the current pass already taken
        self.order: torch.Tensor | None = None
        self._warned = False

    def next_epoch(self, draw: Callable[[], torch.Tensor]) -> tuple[torch.Tensor | None, range]:
        """The next epoch's row order (None: in order) and batch indices within the pass; moves past them.

        `draw()` gives a new pass's order (from torch's generator, so runs repeat under a seed).
        """
        if not self.carry_over:
            self.position = 0
        if self.position == 0 and self.shuffle:
            self.order = draw()
        first = self.position
        last = min(first + self.steps, self.batches_per_pass)
        if last - first < self.steps and not self._warned:
            self._warned = True
            warnings.warn(
                f"`steps_per_epoch={self.steps}` does not divide the {self.batches_per_pass} batches of the data, so "
                f"an epoch that reaches the end of the data ends there, after {last - first} batch(es), and the next "
                "epoch starts a new pass, as Keras does. Pass a divisor of the number of batches for equal epochs.",
                stacklevel=4,
            )
        self.position = last % self.batches_per_pass
        return (self.order if self.shuffle else None), range(first, last)

    def state_dict(self) -> dict[str, Any]:
        """The position, and the pass's order while inside a shuffled pass (a new pass draws its own)."""
        inside = self.shuffle and self.position > 0
        return {"position": self.position, "order": self.order.cpu() if inside and self.order is not None else None}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.position = int(state["position"])
        if state.get("order") is not None:
            self.order = state["order"]
