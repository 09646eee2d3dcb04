"""TerminateOnNaN: stop (or raise) once a training batch's loss is NaN or infinite, without a sync per batch."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from epochal.callbacks.callback import Callback
from epochal.logs import Logs, read_values
from epochal.parallel.process import is_main_process


class NonFiniteLossError(RuntimeError):
    """Raised by `TerminateOnNaN(raise_error=True)` when a batch loss is not finite."""


class TerminateOnNaN(Callback):
    """Stop training when a training batch's `loss` is NaN or infinite (Keras), reading losses in bulk.

    Keras reads the loss after every batch, which waits for the device each time. Here each batch's
    loss stays on the device and they are read together every `check_every` batches and at each
    epoch's end (where the loop reads the epoch's logs anyway). Training stops at the first check
    after the bad batch — after that batch itself with `check_every=1` (Keras's placement) — and the
    message, `stopped_epoch` and `stopped_batch` name the first bad batch exactly. Losses already
    on the host (a plain dict of logs) are checked at once. The weights left are those of the last
    update before the stop; pair it with `EarlyStopping(restore_best_weights=True)` or
    `ModelCheckpoint` to keep the last good ones.

    Args:
        raise_error: Raise `NonFiniteLossError` (a `RuntimeError`) naming the epoch and batch instead
            of setting `model.stop_training`. Defaults to `False`.
        check_every: Batches between two reads of the pending losses (one host sync each).
            Defaults to `32`.

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

    def __init__(self, raise_error: bool = False, check_every: int = 32) -> None:
        super().__init__()
        if isinstance(check_every, bool) or not isinstance(check_every, int) or check_every < 1:
            raise ValueError(f"`check_every` must be a positive integer. Received: check_every={check_every!r}")
        self.raise_error = raise_error
        self.check_every = check_every
        self._reset()

    def _reset(self) -> None:
        self._epoch = 0
        self._pending: list[tuple[int, int, Logs]] = []  # (epoch, batch, its logs: values still on the device)
        self._unchecked = 0  # batches since the last check
        self.stopped_epoch: int | None = None
        self.stopped_batch: int | None = None

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self._reset()

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        if isinstance(logs, Logs):  # the loop's logs: kept as they are, read at the next check
            if "loss" in logs:
                self._pending.append((self._epoch, batch, logs))
                self._unchecked += 1
                if self._unchecked >= self.check_every:
                    self._check()
            return
        loss = (logs or {}).get("loss")  # plain values, already on the host: checking costs nothing
        if loss is not None and not math.isfinite(loss):
            self._terminate(self._epoch, batch, loss)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self._check()

    def _check(self) -> None:
        """Read every pending loss in one transfer; stop at the first that is not finite."""
        pending, self._pending, self._unchecked = self._pending, [], 0
        for (epoch, batch, _), value in zip(pending, read_values([logs for _, _, logs in pending], "loss")):
            if not math.isfinite(value):
                self._terminate(epoch, batch, value)
                return

    def _terminate(self, epoch: int, batch: int, loss: float) -> None:
        self.stopped_epoch, self.stopped_batch = epoch, batch
        if self.raise_error:
            raise NonFiniteLossError(
                f"The training loss became {loss} at epoch {epoch} (0-based; Epoch {epoch + 1} in "
                f"progress output), batch {batch}. Look for a too-high learning rate, unnormalised inputs, or "
                "NaN/inf in the data."
            )
        if is_main_process():
            print(f"Epoch {epoch + 1}, batch {batch}: invalid loss {loss}, terminating training.")
        self.model.stop_training = True  # type: ignore[union-attr]

    def state_dict(self) -> dict[str, Any]:
        """Batches since the last check, so a resumed run checks at the same batches.

        The pending losses are not kept: a backup is only written while the epoch's loss is finite,
        so they were all finite."""
        return {"unchecked": self._unchecked}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._pending, self._unchecked = [], int(state.get("unchecked", 0))
