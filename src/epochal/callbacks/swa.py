"""SWA: stochastic weight averaging over the last epochs, with torch's `swa_utils` doing the maths."""

from __future__ import annotations

import itertools
import numbers
import warnings
from collections.abc import Iterator, Mapping
from typing import Any, Protocol, cast

import torch
import torch.distributed as dist
from torch.optim.swa_utils import SWALR, update_bn

from epochal.callbacks.averaged_weights import AveragedWeights
from epochal.callbacks.callback import Callback
from epochal.data import Batch
from epochal.data.structure import call_module
from epochal.parallel.process import is_distributed, world_size


class TrainingData(Protocol):
    """What SWA needs besides a `ModelView` to recompute BatchNorm statistics; `epochal.Model` has it."""

    def training_batches(self) -> Iterator[Batch]: ...


class SWA(Callback):
    """Stochastic Weight Averaging (Izmailov et al., 2018): average the weights of the last epochs.

    From epoch `start_epoch` (0-based) on, the weights at each epoch's end are averaged in with equal
    weight (torch's `AveragedModel`), and with `lr` set, torch's `SWALR` anneals every param group's
    learning rate to `lr` over `anneal_epochs` epochs and holds it there (replacing any other
    schedule from then on). When training ends the module takes the averaged weights and, with
    `update_bn`, its BatchNorm statistics are recomputed for them by one forward pass over the
    training data in training mode (torch's `update_bn`; under DDP each process passes over its own
    share and the statistics are averaged across processes, so every rank ends identical).

    Validation during training uses the module's own weights (the average would need its BatchNorm
    statistics recomputed every epoch). The average and the scheduler are part of `state_dict()`,
    so `BackupAndRestore` resumes them exactly. A run that stops before `start_epoch` keeps its last
    weights, with a warning.

    Args:
        start_epoch: The first epoch (0-based) whose weights are averaged in.
        lr: The learning rate SWALR anneals to; `None` leaves the learning rate alone.
        anneal_epochs: Epochs over which SWALR moves the rate to `lr` (0: at once). Defaults to `10`.
        anneal_strategy: `"cos"` or `"linear"`. Defaults to `"cos"`.
        update_bn: Recompute BatchNorm statistics for the averaged weights at the end. Defaults to `True`.

    Example:
        >>> import torch, epochal
        >>> model = epochal.Model(torch.nn.Linear(3, 1), device="cpu")
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> swa = SWA(start_epoch=2, lr=0.005, anneal_epochs=1)
        >>> _ = model.fit(torch.ones(8, 3), torch.zeros(8, 1), epochs=4, verbose=0, callbacks=[swa])
        >>> swa.updates, model.optimizer.param_groups[0]["lr"]
        (2, 0.005)
    """

    def __init__(self, start_epoch: int, lr: float | None, *, anneal_epochs: int = 10,
                 anneal_strategy: str = "cos", update_bn: bool = True) -> None:
        super().__init__()
        if isinstance(start_epoch, bool) or not isinstance(start_epoch, int) or start_epoch < 0:
            raise ValueError(f"`start_epoch` must be a non-negative integer. Received: start_epoch={start_epoch!r}")
        if lr is not None and (isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not lr > 0):
            raise ValueError(f"`lr` must be a positive number or None. Received: lr={lr!r}")
        if isinstance(anneal_epochs, bool) or not isinstance(anneal_epochs, int) or anneal_epochs < 0:
            raise ValueError(
                f"`anneal_epochs` must be a non-negative integer. Received: anneal_epochs={anneal_epochs!r}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"`anneal_strategy` must be 'cos' or 'linear'. Received: anneal_strategy={anneal_strategy!r}")
        if not isinstance(update_bn, bool):
            raise TypeError(f"`update_bn` must be a bool. Received: update_bn={update_bn!r}")
        self.start_epoch = start_epoch
        self.lr = None if lr is None else float(lr)
        self.anneal_epochs = anneal_epochs
        self.anneal_strategy = anneal_strategy
        self.update_bn = update_bn
        self.average: AveragedWeights | None = None
        self.scheduler: SWALR | None = None

    @property
    def updates(self) -> int:
        """Epochs averaged in since `fit` began."""
        return 0 if self.average is None else self.average.updates

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        module = self.model.module  # type: ignore[union-attr]
        if self.update_bn and _batch_norms(module) and not hasattr(self.model, "training_batches"):
            raise RuntimeError(
                "SWA(update_bn=True) recomputes BatchNorm statistics from the training data, which this model "
                "does not offer (`training_batches()`). Train through `epochal.Model`, or pass update_bn=False.")
        self.average = AveragedWeights(module)
        self.scheduler = None

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        if self.lr is not None and epoch >= self.start_epoch and self.scheduler is None:
            self.scheduler = self._new_scheduler()

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        if epoch < self.start_epoch:
            return
        self._average().update()
        if self.scheduler is not None:
            self.scheduler.step()

    def on_train_end(self, logs: Mapping[str, float] | None = None) -> None:
        if not self.updates:
            warnings.warn(f"SWA: training ended before `start_epoch` ({self.start_epoch}); no weights were "
                          "averaged and the module keeps its last weights.", stacklevel=2)
            return
        self._average().copy_to_module()
        if self.update_bn:
            self._update_batch_norm()

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {} if self.average is None else {"average": self.average.state_dict()}
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "average" in state:
            self._average().load_state_dict(state["average"])
        self.scheduler = None
        if "scheduler" in state:
            self.scheduler = self._new_scheduler(keep_lr=True)
            self.scheduler.load_state_dict(dict(state["scheduler"]))

    def _average(self) -> AveragedWeights:
        if self.average is None:  # driven without `on_train_begin` (a test, or state loaded first)
            self.average = AveragedWeights(self.model.module)  # type: ignore[union-attr]
        return self.average

    def _new_scheduler(self, keep_lr: bool = False) -> SWALR:
        """SWALR on the model's optimizer; `keep_lr` undoes the step its constructor takes (a restore)."""
        groups = self.model.optimizer.param_groups  # type: ignore[union-attr]
        rates = [group["lr"] for group in groups]
        scheduler = SWALR(self.model.optimizer, swa_lr=self.lr, anneal_epochs=self.anneal_epochs,  # type: ignore[union-attr, arg-type]
                          anneal_strategy=self.anneal_strategy)  # type: ignore[arg-type]
        if keep_lr:
            for group, rate in zip(groups, rates):
                group["lr"] = rate
        return scheduler

    def _update_batch_norm(self) -> None:
        """torch's `update_bn` over this process's training batches, averaged across processes."""
        module = self.model.module  # type: ignore[union-attr]
        norms = _batch_norms(module)
        if not norms:
            return
        batches = (batch for batch in cast(TrainingData, self.model).training_batches() if batch.weight)
        first = next(batches, None)
        if first is None:
            warnings.warn("SWA: the training data yielded no batch to recompute BatchNorm statistics with; they "
                          "stay those of the last training step.", stacklevel=3)
            return
        update_bn(([batch.x] for batch in itertools.chain([first], batches)), _Caller(module))
        if is_distributed():
            for norm in norms:
                for statistic in (norm.running_mean, norm.running_var):
                    if statistic is not None:
                        dist.all_reduce(statistic)
                        statistic.div_(world_size())


class _Caller(torch.nn.Module):
    """Calls the module on a batch's `x` as training does (`module(*x)` for a tuple, `**x` for a dict)."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.inner = module
        self.train(module.training)  # update_bn puts this wrapper (and so the module) back in its mode

    def forward(self, x: Any) -> Any:
        return call_module(self.inner, x)


def _batch_norms(module: torch.nn.Module) -> list[torch.nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
