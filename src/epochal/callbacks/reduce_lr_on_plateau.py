"""ReduceLROnPlateau: cut the learning rate when a monitored value stops improving (Keras semantics)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from epochal.callbacks.callback import Callback
from epochal.callbacks.monitor_reader import MonitorReader
from epochal.monitoring import initial_best, is_improvement, resolve_mode
from epochal.callbacks.optimizer_lr import chosen_optimizers, get_lr, set_lr
from epochal.parallel.process import is_main_process


class ReduceLROnPlateau(Callback):
    """Multiply every param group's learning rate by `factor` after `patience` epochs without improvement.

    As Keras: at each epoch's end, during a cooldown the counter of bad epochs stays at 0; an
    improvement (`current < best - min_delta` in `min` mode) resets it; otherwise, outside a
    cooldown, it grows, and once it reaches `patience` each group whose rate is above `min_lr` gets
    `max(lr * factor, min_lr)`, the cooldown starts and the counter resets. A group already at
    `min_lr` is left alone (and then nothing resets). The engine records the rate as
    `learning_rate` in the epoch logs.

    Args:
        monitor: Epoch-log key to watch. Defaults to `"val_loss"`.
        factor: Multiplier for the learning rate, in (0, 1). Defaults to `0.1`.
        patience: Epochs without improvement before reducing. Defaults to `10`.
        verbose: `1` prints a line at each reduction. Defaults to `0`.
        mode: `"min"`, `"max"` or `"auto"` (from the monitor's name). Defaults to `"auto"`.
        min_delta: Smallest change that counts as an improvement. Defaults to `1e-4`.
        cooldown: Epochs to wait after a reduction before counting again. Defaults to `0`.
        min_lr: Lower bound on the learning rate. Defaults to `0.0`.
        optimizer: The name of the optimizer to act on (`compile(optimizer={...})`). Defaults to `None`:
            every optimizer of the model.

    Example:
        >>> import torch
        >>> from types import SimpleNamespace
        >>> net = torch.nn.Linear(2, 1)
        >>> reduce = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1)
        >>> optimizer = torch.optim.SGD(net.parameters(), lr=1.0)
        >>> reduce.set_model(SimpleNamespace(optimizers={"optimizer": optimizer}))
        >>> reduce.on_train_begin()
        >>> for epoch, loss in enumerate([1.0, 1.0, 1.0]):
        ...     reduce.on_epoch_end(epoch, {"loss": loss})
        >>> optimizer.param_groups[0]["lr"]
        0.25
    """

    reports_learning_rate = True  # asks the loop to record `learning_rate` in the epoch logs

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        verbose: int = 0,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
        optimizer: str | None = None,
    ) -> None:
        super().__init__()
        if factor >= 1.0:
            raise ValueError(f"`factor` must be < 1.0. Received: factor={factor!r}")
        if factor <= 0.0:
            raise ValueError(f"`factor` must be > 0.0. Received: factor={factor!r}")
        for name, value in (("patience", patience), ("cooldown", cooldown)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"`{name}` must be a non-negative integer. Received: {name}={value!r}")
        if min_lr < 0.0:
            raise ValueError(f"`min_lr` must be >= 0. Received: min_lr={min_lr!r}")
        self.monitor = monitor
        self._monitor = MonitorReader("ReduceLROnPlateau", monitor)
        self.factor = factor
        self.patience = patience
        self.verbose = verbose
        self.mode = resolve_mode(mode, monitor)
        self.min_delta = min_delta
        self.cooldown = cooldown
        self.min_lr = min_lr
        self.optimizer = optimizer
        self._reset()

    def _reset(self) -> None:
        self.best = initial_best(self.mode)
        self.wait = 0
        self.cooldown_counter = 0
        self._monitor.reset()

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self._reset()

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        current = self._monitor.read(logs)
        if current is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if is_improvement(float(current), self.best, mode=self.mode, min_delta=self.min_delta):
            self.best = float(current)
            self.wait = 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience and self._reduce():
                if self.verbose > 0 and is_main_process():
                    rates = ", ".join(f"{get_lr(g):g}" for g in self._groups())
                    print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {rates}.")
                self.cooldown_counter = self.cooldown
                self.wait = 0

    def _reduce(self) -> bool:
        """Lower each group's rate that is above `min_lr`; whether any was lowered."""
        reduced = False
        for group in self._groups():
            old = get_lr(group)
            if old > self.min_lr:
                set_lr(group, max(old * self.factor, self.min_lr))
                reduced = True
        return reduced

    def _groups(self) -> list[dict[str, Any]]:
        optimizers = chosen_optimizers(self.model, self.optimizer, "ReduceLROnPlateau")  # type: ignore[arg-type]
        return [group for optimizer in optimizers for group in optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait, "cooldown_counter": self.cooldown_counter}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best = float(state["best"])
        self.wait = int(state["wait"])
        self.cooldown_counter = int(state["cooldown_counter"])
