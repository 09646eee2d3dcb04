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


def warn_missing_monitor(owner: str, monitor: str, logs: Mapping[str, float] | None) -> None:
    """Warn that `monitor` is not in `logs`, listing the keys that are, so a typo is easy to spot."""
    available = ", ".join(sorted(logs or {})) or "none"
    warnings.warn(
        f"{owner} is monitoring `{monitor}`, which is not in the logs. Available keys: {available}.",
        stacklevel=3,
    )
