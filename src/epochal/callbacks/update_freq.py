"""Keras's `update_freq` argument of the logging callbacks: `"epoch"`, `"batch"` or every N batches."""

from __future__ import annotations

from typing import Any


def batch_interval(update_freq: Any) -> int | None:
    """None for `"epoch"` (epoch logs only), else how many batches apart batch logs are written.

    Example:
        >>> batch_interval("epoch"), batch_interval("batch"), batch_interval(50)
        (None, 1, 50)
    """
    if update_freq == "epoch":
        return None
    if update_freq == "batch":
        return 1
    if isinstance(update_freq, bool) or not isinstance(update_freq, int) or update_freq < 1:
        raise ValueError(
            f"`update_freq` must be 'epoch', 'batch' or a positive integer. Received: update_freq={update_freq!r}")
    return update_freq
