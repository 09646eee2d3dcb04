"""Preemption: during `fit`, a first SIGTERM/SIGINT asks the loop to stop after the current batch
(writing a backup when `BackupAndRestore` is in use); a second one stops at once."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any

_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), signal.SIGINT) if s is not None)


class TrainingInterrupted(KeyboardInterrupt):
    """`fit` stopped because of SIGTERM or SIGINT.

    A `KeyboardInterrupt`, so `except Exception` in user code does not swallow a stop request.
    `signal_name` says which signal; the message says whether a backup was written.
    """

    def __init__(self, message: str, signal_name: str) -> None:
        super().__init__(message)
        self.signal_name = signal_name


class SignalGuard:
    """Catches SIGTERM/SIGINT while `fit` runs and restores the previous handlers afterwards.

    Only the main thread can install handlers; elsewhere the guard does nothing (`received` stays None).

    Example:
        >>> with SignalGuard() as guard:
        ...     guard.received is None
        True
    """

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SignalGuard:
        if threading.current_thread() is threading.main_thread():
            for number in _SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}

    def _handle(self, number: int, frame: FrameType | None) -> None:
        name = signal.Signals(number).name
        if self.received is not None:
            raise TrainingInterrupted(f"Received {name} again: training stopped at once, without a new backup.", name)
        self.received = name
        print(f"\nReceived {name}: finishing the current batch, then stopping (send it again to stop at once).",
              file=sys.stderr, flush=True)
