"""The one rule for "did the monitored value improve?", shared by every monitoring callback."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

# Metric names where a larger value is better, besides anything containing "acc".
_HIGHER_IS_BETTER = ("auc", "precision", "recall", "f1", "fbeta", "r2", "iou", "jaccard", "dice", "top_k")


def resolve_mode(mode: str, monitor: str) -> str:
    """`"min"` or `"max"` for `mode`, reading `"auto"` from the monitored key's name as Keras does."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"`mode` must be one of 'auto', 'min', 'max'. Received: mode={mode!r}")
    if mode != "auto":
        return mode
    name = monitor.removeprefix("val_").lower()
    if "acc" in name or any(name.startswith(m) or name.endswith(m) for m in _HIGHER_IS_BETTER):
        return "max"
    return "min"


def initial_best(mode: str, baseline: float | None = None) -> float:
    """The starting `best`: `baseline` if given, else the worst possible value for `mode`."""
    if baseline is not None:
        return float(baseline)
    return math.inf if mode == "min" else -math.inf


def is_improvement(current: float, best: float, *, mode: str, min_delta: float = 0.0) -> bool:
    """Strict improvement: `current < best - min_delta` (min) or `current > best + min_delta` (max)."""
    delta = abs(min_delta)
    if mode == "min":
        return current < best - delta
    return current > best + delta


class MonitorReader:
    """Reads the monitored key from epoch logs; when it is missing, warns once per run, listing the
    keys there are so a typo is easy to spot, and returns None so the caller does nothing."""

    def __init__(self, owner: str, monitor: str) -> None:
        self.owner = owner
        self.monitor = monitor
        self._warned = False

    def reset(self) -> None:
        self._warned = False

    def read(self, logs: Mapping[str, float] | None) -> float | None:
        value = (logs or {}).get(self.monitor)
        if value is not None:
            return float(value)
        if not self._warned:
            self._warned = True
            available = ", ".join(sorted(logs or {})) or "none"
            warnings.warn(
                f"{self.owner} is monitoring `{self.monitor}`, which is not in the logs. Available keys: {available}.",
                stacklevel=3,
            )
        return None
