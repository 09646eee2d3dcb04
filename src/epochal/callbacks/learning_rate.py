"""LearningRateScheduler: apply a schedule function, or any PyTorch LR scheduler, per epoch or per batch."""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import torch

from epochal.callbacks.callback import Callback
from epochal.callbacks.monitor_reader import MonitorReader
from epochal.callbacks.optimizer_lr import check_learning_rate, chosen_optimizers, get_lr, set_lr
from epochal.callbacks.run_position import first_global_batch
from epochal.parallel.process import is_main_process

TorchScheduler = torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau
_TORCH_SCHEDULERS = (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


class LearningRateScheduler(Callback):
    """Set the learning rate from a schedule at the start of each epoch (or batch), as Keras does.

    `schedule` is one of:

    - a function of the index, `schedule(index) -> lr` (e.g. from `epochal.schedules`), or Keras's
      form `schedule(index, lr) -> lr` that also receives the current rate (first param group's);
      it is called before each epoch (index = epoch) or each batch (index = global batch count:
      `initial_epoch * steps` plus the batches trained since, or from 0 when `steps` is unknown),
      and its value is set on every param group;
    - a `torch.optim.lr_scheduler.LRScheduler` built on the model's optimizer, whose `step()` is
      called after each epoch (or batch), as PyTorch's own loops do. It keeps its own state across
      `fit` calls;
    - a `torch.optim.lr_scheduler.ReduceLROnPlateau`, stepped after each epoch with the epoch log's
      `monitor` value.

    Args:
        schedule: The function or PyTorch scheduler.
        per: `"epoch"` or `"batch"`: how often the schedule advances. Defaults to `"epoch"`.
        verbose: `1` prints the rate a schedule function sets each epoch. Defaults to `0`.
        monitor: Epoch-log key fed to a PyTorch `ReduceLROnPlateau`. Defaults to `"val_loss"`.
        optimizer: The name of the optimizer a schedule function sets (`compile(optimizer={...})`).
            Defaults to `None`: every optimizer of the model.

    Example:
        >>> import torch
        >>> from types import SimpleNamespace
        >>> from epochal import schedules
        >>> net = torch.nn.Linear(2, 1)
        >>> optimizer = torch.optim.SGD(net.parameters(), lr=1.0)
        >>> scheduler = LearningRateScheduler(schedules.step_decay(1.0, 2, 0.1))
        >>> scheduler.set_model(SimpleNamespace(optimizers={"optimizer": optimizer}))
        >>> scheduler.on_train_begin()
        >>> scheduler.on_epoch_begin(2); optimizer.param_groups[0]["lr"]
        0.1
    """

    reports_learning_rate = True  # asks the loop to record `learning_rate` in the epoch logs

    def __init__(
        self,
        schedule: Callable[..., float] | TorchScheduler,
        per: str = "epoch",
        verbose: int = 0,
        monitor: str = "val_loss",
        optimizer: str | None = None,
    ) -> None:
        super().__init__()
        if per not in ("epoch", "batch"):
            raise ValueError(f"`per` must be 'epoch' or 'batch'. Received: per={per!r}")
        self._torch = isinstance(schedule, _TORCH_SCHEDULERS)
        if isinstance(schedule, torch.optim.lr_scheduler.ReduceLROnPlateau) and per != "epoch":
            raise ValueError(
                f"`per` must be 'epoch' for a PyTorch ReduceLROnPlateau, which is fed `{monitor}` from the epoch "
                f"logs. Received: per={per!r}"
            )
        if not self._torch and not callable(schedule):
            raise TypeError(
                "`schedule` must be a function of the index or a torch.optim.lr_scheduler instance. "
                f"Received: schedule={schedule!r}"
            )
        self.schedule = schedule
        self.per = per
        self.verbose = verbose
        self.monitor = monitor
        self.optimizer = optimizer
        self._monitor = MonitorReader("LearningRateScheduler", monitor)
        self._takes_lr = not isinstance(schedule, _TORCH_SCHEDULERS) and _accepts_two_arguments(schedule)
        # Listen only to the hooks this combination needs, so per-epoch schedules cost nothing per batch.
        if per == "batch":
            if self._torch:
                self.on_train_batch_end = self._step_torch_on_batch  # type: ignore[method-assign]
            else:
                self.on_train_batch_begin = self._apply_on_batch  # type: ignore[method-assign]
        self._step = 0

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self._optimizers = chosen_optimizers(self.model, self.optimizer, "LearningRateScheduler")  # type: ignore[arg-type]
        if self._torch and not any(self.schedule.optimizer is opt for opt in self._optimizers):  # type: ignore[union-attr]
            raise ValueError(
                "The PyTorch scheduler given to LearningRateScheduler was built on another optimizer than the "
                "model's. Build it on `model.optimizer` (or `model.optimizers[name]`) after `compile`."
            )
        self._step = first_global_batch(self.params)
        self._monitor.reset()

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        if self.per == "epoch" and not self._torch:
            lr = self._apply(epoch)
            if self.verbose > 0 and is_main_process():
                print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        if self.per != "epoch":
            return
        # ReduceLROnPlateau first: recent PyTorch makes it an LRScheduler too.
        if isinstance(self.schedule, torch.optim.lr_scheduler.ReduceLROnPlateau):
            current = self._monitor.read(logs)
            if current is None:
                return
            self.schedule.step(float(current))
        elif isinstance(self.schedule, torch.optim.lr_scheduler.LRScheduler):
            self.schedule.step()
            self._check_torch_rates(f"epoch {epoch}")

    def _apply_on_batch(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        self._apply(self._step)
        self._step += 1

    def _step_torch_on_batch(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        self.schedule.step()  # type: ignore[call-arg, union-attr]
        self._check_torch_rates(f"batch {batch}")

    def _check_torch_rates(self, where: str) -> None:
        """The rates a PyTorch scheduler set must be finite and >= 0 (a tensor rate is not read: no device sync)."""
        for index, group in enumerate(self.schedule.optimizer.param_groups):  # type: ignore[union-attr]
            if not isinstance(group["lr"], torch.Tensor):
                check_learning_rate(group["lr"], f"The learning rate the PyTorch scheduler set after {where} "
                                                 f"(param group {index})")

    def _apply(self, index: int) -> float:
        """Call the schedule function for `index` and set its value on every param group it targets."""
        groups = [group for optimizer in self._optimizers for group in optimizer.param_groups]
        value = self.schedule(index, get_lr(groups[0])) if self._takes_lr else self.schedule(index)  # type: ignore[operator]
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"The schedule must return a float. Received: {value!r} for index {index}")
        check_learning_rate(value, f"The learning rate the schedule returned for index {index}")
        for group in groups:
            set_lr(group, float(value))
        return float(value)

    def state_dict(self) -> dict[str, Any]:
        if self._torch:
            return {"scheduler": self.schedule.state_dict()}  # type: ignore[union-attr]
        return {"step": self._step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self._torch:
            self.schedule.load_state_dict(state["scheduler"])  # type: ignore[union-attr]
        else:
            self._step = int(state["step"])


def _accepts_two_arguments(function: Callable[..., Any]) -> bool:
    """Whether `function(index, lr)` is a valid call: Keras's two-argument schedule form."""
    try:
        inspect.signature(function).bind(0, 0.0)
    except (TypeError, ValueError):  # ValueError: no signature to inspect (some builtins)
        return False
    return True
