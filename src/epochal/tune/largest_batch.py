"""The largest batch that trains: one training step per size, doubling from 1, then bisecting."""

from __future__ import annotations

from typing import Any

from epochal.data.structure import slice_rows
from epochal.tune.model_state import Snapshot
from epochal.tune.step_memory import StepMemory, Steppable, measure_step, resident_bytes


class StepProbe:
    """One training step per batch size (the model restored after each), remembered; on CPU a size
    predicted to exceed the budget from the sizes measured is not run."""

    def __init__(self, model: Steppable, snapshot: Snapshot, x: Any, y: Any, budget: int | None) -> None:
        self.model, self.snapshot, self.x, self.y, self.budget = model, snapshot, x, y, budget
        self.measured: dict[int, StepMemory] = {}

    def __call__(self, size: int) -> StepMemory:
        if size not in self.measured:
            predicted = self._predicted(size)
            if predicted is not None and self.budget is not None and resident_bytes() + predicted > self.budget:
                self.measured[size] = StepMemory(False, predicted)
            else:
                self.measured[size] = measure_step(self.model, slice_rows(self.x, 0, size),
                                                   slice_rows(self.y, 0, size), self.budget)
                self.snapshot.restore()
        return self.measured[size]

    def largest(self, limit: int) -> int:
        """The largest size up to `limit` whose step fits: doubling from 1, then bisecting."""
        fits, size = 0, 1
        while size <= limit and self(size).fits:
            fits, size = size, size * 2
        failed = min(size, limit + 1)  # the first size that did not fit, or one past the limit
        if failed == limit + 1:  # every size tried fitted: the limit itself may too
            if fits == limit or self(limit).fits:
                return limit
            failed = limit
        while failed - fits > 1:
            middle = (fits + failed) // 2
            fits, failed = (middle, failed) if self(middle).fits else (fits, middle)
        return fits

    def _predicted(self, size: int) -> int | None:
        """A CPU step's bytes at `size`: its fixed part, plus activations on the line through the two
        largest sizes measured (through zero when only one is)."""
        if self.model.device.type != "cpu":
            return None
        fitted = sorted((s, m) for s, m in self.measured.items() if m.fits and m.activations)
        if not fitted:
            return None
        (small, low), (large, high) = ((0, StepMemory(True, 0)), fitted[-1]) if len(fitted) == 1 else fitted[-2:]
        slope = (high.activations - low.activations) / (large - small)
        return high.bytes - high.activations + round(high.activations + slope * (size - large))
