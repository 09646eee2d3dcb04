"""Where a run starts in global batch count, for callbacks that index by batch across `fit` calls."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def first_global_batch(params: Mapping[str, Any]) -> int:
    """`initial_epoch * steps` when the steps per epoch are known (so a resumed run continues the count), else 0."""
    steps = params.get("steps")
    return int(params.get("initial_epoch", 0)) * steps if isinstance(steps, int) else 0
