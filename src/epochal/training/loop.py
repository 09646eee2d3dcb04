"""The batch loop shared by fit, evaluate and predict, and the epoch loop of fit around it."""

from __future__ import annotations

import itertools
import os
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from epochal.callbacks.callback_list import CallbackList
from epochal.callbacks.optimizer_lr import learning_rates
from epochal.data import Adapter, Batch, warn_empty_validation, warn_ran_dry
from epochal.data.structure import Tree, concatenate, flatten
from epochal.logs import Logs
from epochal.parallel.sync import LOCAL, LocalSync
from epochal.step.pipeline import StepPipeline
from epochal.step.values import StepValues
from epochal.task import Task
from epochal.training.accumulator import MeanAccumulator
from epochal.training.state import TrainingState

if TYPE_CHECKING:
    from epochal.callbacks.callback import ModelView

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
    should_stop: Callable[[int], bool] | None = None,
    start: int = 0,
    source: str = "x",
) -> None:
    """Run `step` on each batch, firing the batch hooks only if some callback listens to them.

    `start` is the index of the first batch (a resumed epoch continues its numbering). An error raised
    inside torch itself (a shape or dtype the module cannot take) becomes a ValueError naming the
    batch and the argument it came from, `source`; an error from the user's own code passes unchanged.
    """
    begin, end = hooks
    fire_begin, fire_end = callbacks.wants(begin), callbacks.wants(end)
    index = start - 1
    for batch in batches:
        # An Execution (steps_per_execution) holds several batches: its events carry the indices
        # of its first (begin) and last (end) batch, as Keras's.
        count = getattr(batch, "steps", 1)
        first, index = index + 1, index + count
        if fire_begin:
            callbacks.fire(begin, first, _NO_LOGS)
        try:
            result = step(batch)
        except (RuntimeError, TypeError, IndexError) as error:
            if not raised_inside_torch(error):
                raise
            leaves = ", ".join(f"shape {tuple(t.shape)} {t.dtype}" for t in flatten(batch.x))
            raise ValueError(f"The module cannot run on batch {first} of `{source}` ({leaves}): {error}. Check "
                             f"that `{source}` has the shape and dtype the module expects.") from error
        consume(result, batch)
        if fire_end:
            callbacks.fire(end, index, logs_for(result))
        # A safe point after each call; the resumable position counts its batches, not executions.
        if should_stop is not None and should_stop(count):
            break


def run_pass(
    step: Callable[[Any], StepValues],
    batches: Iterator[Any],
    callbacks: CallbackList,
    hooks: tuple[str, str],
    task: Task,
    should_stop: Callable[[int], bool] | None = None,
    sync: LocalSync | Any = LOCAL,
    accumulator: MeanAccumulator | None = None,
    start: int = 0,
    source: str = "x",
) -> dict[str, float]:
    """One pass over `batches` (a training epoch, a validation or an evaluation) -> its mean logs.

    `accumulator` (already holding batches `0..start-1`) continues a resumed epoch; by default the
    pass starts from zero.
    """
    if accumulator is None:
        task.reset_stateful()
        accumulator = MeanAccumulator(task.stateful, sync)
    run_batches(step, batches, callbacks, hooks, accumulator.add, accumulator.batch_logs, should_stop, start,
                source)
    return accumulator.result()


def evaluate_pass(
    module: torch.nn.Module, pipeline: StepPipeline, task: Task, batches: Iterator[Batch], callbacks: CallbackList,
    sync: LocalSync | Any = LOCAL, source: str = "x",
) -> dict[str, float]:
    """Loss and metrics over `batches` in eval mode without gradients; weights and buffers untouched.

    Test-batch logs are this process's own; the returned means are over every rank's samples.
    """
    callbacks.fire("on_test_begin", _NO_LOGS)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            logs = run_pass(pipeline.test, batches, callbacks, TEST_HOOKS, task, sync=sync.totals_only(),
                            source=source)
    finally:
        module.train(was_training)
    callbacks.fire("on_test_end", Logs.from_dict(logs))
    return logs


def predict_pass(
    module: torch.nn.Module, step: Callable[[Any], Tree], batches: Iterator[Any], callbacks: CallbackList
) -> Tree:
    """The predict step's outputs for every batch, concatenated in order, on the host."""
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
    if not outputs:
        raise ValueError("`x` is empty: it yielded no batch.")
    return concatenate(outputs)


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
    report_learning_rate: bool
    sync: LocalSync | Any = LOCAL
    state: TrainingState | None = None  # position and backups; a bare one when None

    def validates(self, epoch: int) -> bool:
        if self.validation is None:
            return False
        if isinstance(self.validation_freq, int):
            return (epoch + 1) % self.validation_freq == 0
        return epoch + 1 in self.validation_freq


def fit_loop(model: ModelView, pipeline: StepPipeline, task: Task, plan: FitPlan, callbacks: CallbackList) -> None:
    """The epochs of `fit`, firing callbacks in Keras's order (see SPEC "Order of events").

    `plan.state` follows the position; after `on_train_begin` it may restore a backup, and then the
    loop starts at the saved epoch and batch (see `epochal.training.state`). Each epoch's batches
    (and order) are drawn after `on_epoch_begin`'s predecessors, so a callback seeding the generator
    in `on_train_begin` decides the first epoch's order too.
    """
    module = model.module
    sync = plan.sync
    state = plan.state if plan.state is not None else TrainingState(model, epochs=plan.epochs, sync=sync)
    # `state.after_batch` tracks the position (backups, signals) after every batch; under
    # torch.distributed it agrees with the other ranks on stopping, so they all stop at the same batch.
    should_stop = state.after_batch
    warned_empty_validation = False
    callbacks.fire("on_train_begin", _NO_LOGS)
    model.stop_training = False
    resume = state.resume()
    epoch_logs: dict[str, float] = {} if resume is None else resume.epoch_logs
    for epoch in range(plan.initial_epoch if resume is None else resume.epoch, plan.epochs):
        skip = resume.batch if resume is not None and epoch == resume.epoch else 0
        batches = prefetch(state.epoch_batches(plan.train, epoch, skip))
        if batches is None and skip:
            batches = iter(())  # every batch of the epoch was done: only its validation and end remain
        if batches is None:
            if epoch == plan.initial_epoch and resume is None:
                raise ValueError("The training data is empty: it yielded no batch.")
            warn_ran_dry("x", plan.train.steps)
            break
        callbacks.fire("on_epoch_begin", epoch, _NO_LOGS)
        module.train()
        accumulator = state.begin_epoch(epoch, task, resume if skip else None, sync)
        epoch_logs = run_pass(pipeline.train, pipeline.group(batches), callbacks, TRAIN_HOOKS, task, should_stop,
                              sync, accumulator, skip)
        pipeline.flush()  # a partial gradient-accumulation group is applied before validation
        if plan.train.ran_dry:
            warn_ran_dry("x", plan.train.steps)
            model.stop_training = True
        if plan.validation is not None and plan.validates(epoch):
            val_logs = evaluate_pass(module, pipeline, task, plan.validation.epoch_batches(epoch), callbacks, sync,
                                     "validation_data")
            if not val_logs and not warned_empty_validation:  # a one-shot iterator, already used up
                warned_empty_validation = True
                warn_empty_validation(epoch)
            epoch_logs.update({f"val_{key}": value for key, value in val_logs.items()})
        if plan.report_learning_rate:
            epoch_logs.update(learning_rates(model.optimizers))
        callbacks.fire("on_epoch_end", epoch, Logs.from_dict(epoch_logs))
        model.stop_training = sync.any(model.stop_training)
        state.end_epoch(epoch, epoch_logs)
        if model.stop_training:
            break
    callbacks.fire("on_train_end", Logs.from_dict(epoch_logs))
    state.finish()


def raised_inside_torch(error: BaseException) -> bool:
    """Whether the innermost frame of `error` is torch's own code (not the user's module or step)."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and frames[-1].filename.startswith(_TORCH_DIR)


_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
