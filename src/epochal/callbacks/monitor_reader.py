"""Reading a monitored key from epoch logs, warning once when it is missing."""

from __future__ import annotations

import warnings
from collections.abc import Mapping


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
