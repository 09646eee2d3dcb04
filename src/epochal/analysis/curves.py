"""What the analysis reads of a run: per-epoch values by key, and the run's settings."""

from __future__ import annotations

from typing import Any, Protocol


class Curves(Protocol):
    """A run's learning curves; `epochal.History` is one.

    `epoch` lists the epochs that completed, `history` maps each log key to its values (a key
    logged on fewer epochs, as `val_` keys with `validation_freq > 1`, has a shorter list), and
    `epochs_of(key)` says which epoch each of those values belongs to. `epoch_seconds` holds each
    epoch's wall-clock time when the epochs were timed (empty otherwise).
    """

    epoch: list[int]
    history: dict[str, list[float]]
    params: dict[str, Any]
    epoch_seconds: list[float]

    def epochs_of(self, key: str) -> list[int]: ...
