"""The batch loop shared by fit, evaluate and predict, and the epoch loop of fit around it."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from epochal.callbacks.callback import CallbackList
from epochal.data import Adapter, Batch, warn_ran_dry
from epochal.data.structure import Tree, flatten, map_structure
from epochal.logs import Logs
from epochal.steps import StepFunctions
from epochal.task import Task

if TYPE_CHECKING:
    from epochal.model import Model

TRAIN_HOOKS = ("on_train_batch_begin", "on_train_batch_end")
TEST_HOOKS = ("on_test_batch_begin", "on_test_batch_end")
PREDICT_HOOKS = ("on_predict_batch_begin", "on_predict_batch_end")
_NO_LOGS = Logs()


def run_batches(
    step: Callable[[Batch], Any],
    batches: Iterator[Batch],
    callbacks: CallbackList,
    hooks: tuple[str, str],
    consume: Callable[[Any, Batch], None],
    logs_for: Callable[[Any], Any],
    should_stop: Callable[[], bool] | None = None,
) -> None:
    """Run `step` on each batch, firing the batch hooks only if some callback listens to them."""
    begin, end = hooks
    fire_begin, fire_end = callbacks.wants(begin), callbacks.wants(end)
    index = -1
    for batch in batches:
        # An Execution (steps_per_execution) holds several batches: its events carry the indices
        # of its first (begin) and last (end) batch, as Keras's.
        first, index = index + 1, index + getattr(batch, "steps", 1)
        if fire_begin:
            callbacks.fire(begin, first, _NO_LOGS)
        result = step(batch)
        consume(result, batch)
        if fire_end:
            callbacks.fire(end, index, logs_for(result))
        if should_stop is not None and should_stop():
            break


class MeanAccumulator:
    """Sample-weighted sums of each batch's values, kept on the device until the epoch ends."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.keys = tuple(task.log_keys())
        self.sums: torch.Tensor | None = None
        self.count = 0

    def add(self, values: torch.Tensor, batch: Batch) -> None:
        size = batch.size
        if values.ndim == 2:  # one row per batch of an Execution, all of the same size
            values = values.mean(0)
        if self.sums is None:
            dtype = torch.float32 if values.device.type == "mps" else torch.float64
            self.sums = values.to(dtype) * size
        else:
            self.sums.add_(values, alpha=size)
        self.count += size

    def batch_logs(self, values: torch.Tensor) -> Logs:
        return Logs(self.keys, values[-1] if values.ndim == 2 else values)  # an Execution: its last batch

    def result(self) -> dict[str, float]:
        """Exact means over every sample seen; stateful metrics computed over the whole pass."""
        if self.sums is None:
            return {}
        means = self.sums / self.count
        for position, metric in self.task.stateful():
            means[position] = metric.compute().to(means)
        return dict(zip(self.keys, means.tolist()))


def run_pass(
    step: Callable[[Batch], torch.Tensor],
    batches: Iterator[Batch],
    callbacks: CallbackList,
    hooks: tuple[str, str],
    task: Task,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, float]:
    """One pass over `batches` (a training epoch, a validation or an evaluation) -> its mean logs."""
    task.reset_stateful()
    accumulator = MeanAccumulator(task)
    run_batches(step, batches, callbacks, hooks, accumulator.add, accumulator.batch_logs, should_stop)
    return accumulator.result()


def evaluate_pass(
    module: torch.nn.Module, steps: StepFunctions, task: Task, batches: Iterator[Batch], callbacks: CallbackList
) -> dict[str, float]:
    """Loss and metrics over `batches` in eval mode without gradients; weights and buffers untouched."""
    callbacks.fire("on_test_begin", _NO_LOGS)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            logs = run_pass(steps.test, batches, callbacks, TEST_HOOKS, task)
    finally:
        module.train(was_training)
    callbacks.fire("on_test_end", Logs.from_dict(logs))
    return logs


def predict_pass(
    module: torch.nn.Module, step: Callable[[Batch], Tree], batches: Iterator[Batch], callbacks: CallbackList
) -> Tree:
    """The module's outputs for every batch, concatenated in order, on the host."""
    callbacks.fire("on_predict_begin", _NO_LOGS)
    outputs: list[Tree] = []
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            run_batches(step, batches, callbacks, PREDICT_HOOKS,
                        lambda out, batch: outputs.append(out), lambda out: {"outputs": out})
    finally:
        module.train(was_training)
    callbacks.fire("on_predict_end", _NO_LOGS)
    return concatenate(outputs)


def concatenate(outputs: Sequence[Tree]) -> Tree:
    """Join per-batch outputs of the same structure along the batch axis, moved to the CPU."""
    leaves = [flatten(out) for out in outputs]
    joined = iter([torch.cat([batch[i] for batch in leaves]).cpu() for i in range(len(leaves[0]))])
    return map_structure(lambda _: next(joined), outputs[0])


def prefetch(batches: Iterator[Batch]) -> Iterator[Batch] | None:
    """`batches` with its first element already drawn, or None when there is none."""
    first = next(batches, None)
    return None if first is None else itertools.chain([first], batches)


@dataclass
class FitPlan:
    """Everything the epoch loop needs besides the model and the callbacks."""

    train: Adapter
    validation: Adapter | None
    epochs: int
    initial_epoch: int
    validation_freq: int | Sequence[int]
    first_batches: Iterator[Batch] | None
    report_learning_rate: bool

    def validates(self, epoch: int) -> bool:
        if self.validation is None:
            return False
        if isinstance(self.validation_freq, int):
            return (epoch + 1) % self.validation_freq == 0
        return epoch + 1 in self.validation_freq


def fit_loop(model: Model, steps: StepFunctions, task: Task, plan: FitPlan, callbacks: CallbackList) -> None:
    """The epochs of `fit`, firing callbacks in Keras's order (see SPEC "Order of events")."""
    module = model.module
    epoch_logs: dict[str, float] = {}
    callbacks.fire("on_train_begin", _NO_LOGS)
    model.stop_training = False
    for epoch in range(plan.initial_epoch, plan.epochs):
        batches = plan.first_batches if epoch == plan.initial_epoch else None
        batches = batches or prefetch(plan.train.epoch_batches(epoch))
        if batches is None:
            warn_ran_dry("x", plan.train.steps)
            break
        callbacks.fire("on_epoch_begin", epoch, _NO_LOGS)
        module.train()
        epoch_logs = run_pass(steps.train, steps.group(batches), callbacks, TRAIN_HOOKS, task,
                              lambda: model.stop_training)
        steps.flush()
        if plan.train.ran_dry:
            warn_ran_dry("x", plan.train.steps)
            model.stop_training = True
        if plan.validation is not None and plan.validates(epoch):
            val_logs = evaluate_pass(module, steps, task, plan.validation.epoch_batches(epoch), callbacks)
            epoch_logs.update({f"val_{key}": value for key, value in val_logs.items()})
        if plan.report_learning_rate:
            epoch_logs["learning_rate"] = float(model.optimizer.param_groups[0]["lr"])
        callbacks.fire("on_epoch_end", epoch, Logs.from_dict(epoch_logs))
        if model.stop_training:
            break
    callbacks.fire("on_train_end", Logs.from_dict(epoch_logs))
