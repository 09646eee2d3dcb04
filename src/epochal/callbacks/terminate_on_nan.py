"""TerminateOnNaN: stop (or raise) at the first batch whose loss is NaN or infinite."""

from __future__ import annotations

import math
from collections.abc import Mapping

from epochal.callbacks.callback import Callback
from epochal.parallel.process import is_main_process


class NonFiniteLossError(RuntimeError):
    """Raised by `TerminateOnNaN(raise_error=True)` at the first non-finite batch loss."""


class TerminateOnNaN(Callback):
    """Stop training at the first training batch whose `loss` is NaN or infinite, as Keras does.

    The batch loss is read after every batch, which costs one host sync per batch (the price of
    stopping at that very batch). The weights left are those after the bad batch's update; pair it
    with `EarlyStopping(restore_best_weights=True)` or `ModelCheckpoint` to keep the last good ones.

    Args:
        raise_error: Raise `NonFiniteLossError` (a `RuntimeError`) naming the epoch and batch instead
            of setting `model.stop_training`. Defaults to `False`.

    Example:
        >>> from types import SimpleNamespace
        >>> guard = TerminateOnNaN()
        >>> guard.set_model(SimpleNamespace(stop_training=False))
        >>> guard.on_train_begin(); guard.on_epoch_begin(0)
        >>> guard.on_train_batch_end(3, {"loss": float("nan")})
        Epoch 1, batch 3: invalid loss nan, terminating training.
        >>> guard.model.stop_training, guard.stopped_batch
        (True, 3)
    """

    def __init__(self, raise_error: bool = False) -> None:
        super().__init__()
        self.raise_error = raise_error
        self._reset()

    def _reset(self) -> None:
        self._epoch = 0
        self.stopped_epoch: int | None = None
        self.stopped_batch: int | None = None

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self._reset()

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(loss):
            return
        self.stopped_epoch, self.stopped_batch = self._epoch, batch
        if self.raise_error:
            raise NonFiniteLossError(
                f"The training loss became {loss} at epoch {self._epoch} (0-based; Epoch {self._epoch + 1} in "
                f"progress output), batch {batch}. Look for a too-high learning rate, unnormalised inputs, or "
                "NaN/inf in the data."
            )
        if is_main_process():
            print(f"Epoch {self._epoch + 1}, batch {batch}: invalid loss {loss}, terminating training.")
        self.model.stop_training = True  # type: ignore[union-attr]
