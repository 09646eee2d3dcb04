"""EarlyStopping: stop when a monitored value stops improving, optionally restoring the best weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from epochal.callbacks.callback import Callback
from epochal.callbacks.monitor_reader import MonitorReader
from epochal.monitoring import Patience, resolve_mode
from epochal.parallel.process import is_main_process


class EarlyStopping(Callback):
    """Stop training once `monitor` has not improved for `patience` epochs (Keras semantics).

    Args:
        monitor: Epoch-log key to watch. Defaults to `"val_loss"`.
        min_delta: Smallest change that counts as an improvement (absolute value). Defaults to `0`.
        patience: Epochs without improvement before stopping. Defaults to `0`.
        verbose: `1` prints a line when stopping or restoring. Defaults to `0`.
        mode: `"min"`, `"max"` or `"auto"` (from the key's name). Defaults to `"auto"`.
        baseline: A value the monitor must beat for `wait` to reset; epochs that improve without
            beating it still count toward `patience` (Keras 3). Defaults to `None`.
        restore_best_weights: Load the best epoch's weights back when training ends, early or not.
            Defaults to `False`.
        start_from_epoch: Epochs to wait before watching at all. Defaults to `0`.

    Example:
        >>> stopper = EarlyStopping(monitor="loss", patience=1)
        >>> stopper.on_train_begin()
        >>> stopper.on_epoch_end(0, {"loss": 1.0}); stopper.wait
        0
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0.0,
        patience: int = 0,
        verbose: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(patience, int) or patience < 0:
            raise ValueError(f"`patience` must be a non-negative integer. Received: patience={patience!r}")
        self.monitor = monitor
        self._monitor = MonitorReader("EarlyStopping", monitor)
        self.min_delta = abs(min_delta)
        self.patience = patience
        self.verbose = verbose
        self.mode = resolve_mode(mode, monitor)
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self._reset()

    def _reset(self) -> None:
        self.rule = Patience(self.mode, min_delta=self.min_delta, patience=self.patience, baseline=self.baseline,
                             start_from_epoch=self.start_from_epoch)
        self.best_weights: dict[str, torch.Tensor] | None = None
        self._monitor.reset()

    @property
    def wait(self) -> int:
        return self.rule.wait

    @property
    def best(self) -> float:
        return self.rule.best

    @property
    def best_epoch(self) -> int:
        return self.rule.best_epoch

    @property
    def stopped(self) -> bool:
        return self.rule.stopped_epoch is not None

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self._reset()

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        current = self._monitor.read(logs)
        if current is None or not self.rule.counts(epoch):
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self._snapshot()  # something to restore even if nothing improves
        stop = self.rule.update(epoch, float(current))
        if self.rule.improved and self.restore_best_weights:
            self.best_weights = self._snapshot()
        if stop:
            self.model.stop_training = True  # type: ignore[union-attr]

    def on_train_end(self, logs: Mapping[str, float] | None = None) -> None:
        if self.stopped and self.verbose > 0 and is_main_process():
            print(f"Epoch {self.rule.stopped_epoch + 1}: early stopping")  # type: ignore[operator]
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0 and is_main_process():
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.module.load_state_dict(self.best_weights)  # type: ignore[union-attr]

    def _snapshot(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.module.state_dict().items()}  # type: ignore[union-attr]

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = dict(self.rule.state_dict())
        if self.best_weights is not None:
            state["best_weights"] = self.best_weights
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rule.load_state_dict(dict(state))
        self.best_weights = state.get("best_weights")
