"""Argument checks raised before any training starts, in one message style:
``ValueError: `batch_size` must be a positive integer. Received: batch_size=0``."""

from __future__ import annotations

import datetime
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any


def positive_int(name: str, value: Any, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")


def non_negative_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"`{name}` must be a non-negative integer. Received: {name}={value!r}")


def validation_split(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"`validation_split` must be in [0, 1). Received: validation_split={value!r}")


def validation_freq(value: Any) -> None:
    if isinstance(value, Sequence) and not isinstance(value, str):
        if not value or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in value):
            raise ValueError(
                "`validation_freq` must be a positive integer or a list of positive epoch numbers. "
                f"Received: validation_freq={value!r}"
            )
        return
    positive_int("validation_freq", value)


def class_weight(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping) or not all(
        isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in value
    ):
        raise TypeError(
            "`class_weight` must be a dict {class_index: weight} with non-negative integer keys. "
            f"Received: class_weight={value!r}"
        )
    for key, weight in value.items():
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
            raise TypeError(f"`class_weight` weights must be numbers. Received: class_weight[{key}]={weight!r}")
        if not 0 <= float(weight) < math.inf:
            raise ValueError(
                f"`class_weight` weights must be finite numbers >= 0. Received: class_weight[{key}]={weight!r}"
            )


def max_time(value: Any) -> float | None:
    """`max_time` in seconds — a number or a `datetime.timedelta`, positive and finite — or None."""
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise TypeError("`max_time` must be a number of seconds or a datetime.timedelta. "
                        f"Received: max_time={value!r}")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"`max_time` must be a positive, finite number of seconds. Received: max_time={value!r}")
    return seconds
