"""Calls that the training thread waits for only so long: a tracker's store that stops answering (MLflow's
HTTP client retries a dead server for about four minutes per request) must cost seconds, not the run."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def call_with_deadline(seconds: float, action: Callable[..., Any], *args: Any) -> None:
    """Run `action(*args)` on a daemon thread and wait at most `seconds` for it to return.

    Raises:
        TimeoutError: It had not returned by then. It may still finish in the background; being a daemon
            thread, it never holds up the interpreter's exit.
        Exception: Whatever `action` raised, re-raised here.

    Example:
        >>> call_with_deadline(5.0, print, "logged")
        logged
    """
    failure: list[Exception] = []

    def attempt() -> None:
        try:
            action(*args)
        except Exception as error:  # handed to the waiting caller below, which decides what it means
            failure.append(error)

    worker = threading.Thread(target=attempt, name="epochal-deadline", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise TimeoutError(f"no answer within {seconds:g} s")
    if failure:
        raise failure[0]
