"""Progress output: a live tqdm bar per epoch (verbose=1) or one line per epoch (verbose=2)."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any

from epochal.callbacks.callback import Callback
from epochal.callbacks.run_position import validates_by_step


def format_logs(logs: Mapping[str, float]) -> str:
    """`loss: 0.1234 - accuracy: 0.9800`, Keras's epoch-line format."""
    return " - ".join(f"{key}: {value:.4f}" for key, value in logs.items())


def validation_line(step: int, logs: Mapping[str, float] | None) -> str:
    """`Step 500 - val_loss: 0.1234`: a validation of a run that validates every N batches, at its global step."""
    return f"Step {step} - {format_logs(logs or {})}"


def resolve_verbose(verbose: int | str) -> int:
    """`"auto"` is 1 on a terminal (a live bar) and 2 otherwise (one line per epoch)."""
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    if verbose not in (0, 1, 2):
        raise ValueError(f"`verbose` must be 0, 1, 2 or 'auto'. Received: verbose={verbose!r}")
    return int(verbose)


class EpochLogger(Callback):
    """One line per epoch with its time and logs (`verbose=2`), and one per validation when the run validates
    every N batches (`fit(validation_every=N)`); nothing per batch."""

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        seconds = time.perf_counter() - self._epoch_start
        print(f"Epoch {epoch + 1}/{self.params.get('epochs')} - {seconds:.1f}s - {format_logs(logs or {})}",
              flush=True)

    def on_validation_end(self, step: int, logs: Mapping[str, float] | None = None) -> None:
        if validates_by_step(self.params):
            print(validation_line(step, logs), flush=True)


class ProgbarLogger(Callback):
    """A live progress bar per epoch (`verbose=1`), in terminals and notebooks alike (tqdm).

    The bar advances every batch but reads (and so synchronises) the batch's logs only when it
    redraws, at most every `refresh_seconds`, so it costs almost nothing per batch. A run that validates
    every N batches (`fit(validation_every=N)`) gets each validation's line printed above the bar.
    """

    def __init__(self, refresh_seconds: float = 0.25) -> None:
        super().__init__()
        self.refresh_seconds = refresh_seconds
        self._bar: Any = None
        self._last_draw = 0.0

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=self.params.get("steps"), desc=f"Epoch {epoch + 1}/{self.params.get('epochs')}",
            unit="batch", leave=True, dynamic_ncols=True, mininterval=self.refresh_seconds, file=sys.stdout,
        )
        self._last_draw = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        self._bar.update(1)
        now = time.perf_counter()
        if now - self._last_draw >= self.refresh_seconds and logs:
            self._last_draw = now
            self._bar.set_postfix_str(format_logs(logs), refresh=False)

    def on_validation_end(self, step: int, logs: Mapping[str, float] | None = None) -> None:
        if validates_by_step(self.params) and self._bar is not None:
            self._bar.write(validation_line(step, logs), file=sys.stdout)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self._bar.set_postfix_str(format_logs(logs or {}), refresh=False)
        self._close()

    def on_train_end(self, logs: Mapping[str, float] | None = None) -> None:
        self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def progress_callback(verbose: int) -> Callback | None:
    """The progress printer for a resolved `verbose` level (None for silent)."""
    return {0: None, 1: ProgbarLogger(), 2: EpochLogger()}[verbose]
