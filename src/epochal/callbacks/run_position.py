"""Where a run is in global batch count (steps), for callbacks that index by batch across `fit` calls."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def first_global_batch(params: Mapping[str, Any]) -> int:
    """`initial_epoch * steps` when the steps per epoch are known (so a resumed run continues the count), else 0."""
    steps = params.get("steps")
    return int(params.get("initial_epoch", 0)) * steps if isinstance(steps, int) else 0


def validates_by_step(params: Mapping[str, Any]) -> bool:
    """Whether the run validates every N batches (`fit(validation_every=N)`): loggers then also record each
    validation at its global step, as `History.validation_history` does."""
    return params.get("validation_every") is not None


def step_tag(key: str) -> str:
    """The name a validation's `val_` key is logged under against the global step: Keras 3's TensorBoard tag.

    Example:
        >>> step_tag("val_loss"), step_tag("val_clean_accuracy")
        ('evaluation_loss_vs_iterations', 'evaluation_clean_accuracy_vs_iterations')
    """
    return f"evaluation_{key.removeprefix('val_')}_vs_iterations"
