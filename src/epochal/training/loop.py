"""The batch loop shared by fit, evaluate and predict, and the epoch loop of fit around it."""

from __future__ import annotations

import contextlib
import itertools
import os
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import torch

from epochal.callbacks.callback_list import CallbackList
from epochal.callbacks.optimizer_lr import learning_rates
from epochal.data import Adapter, Batch, warn_ran_dry
from epochal.data.structure import Tree, flatten
from epochal.logs import Logs
from epochal.parallel.sync import LOCAL, LocalSync
from epochal.step.executions import Execution
from epochal.step.pipeline import StepPipeline
from epochal.step.values import StepValues
from epochal.task import Task
from epochal.training.accumulator import MeanAccumulator
from epochal.training.state import Rewind, TrainingState
from epochal.training.step_control import StepControl, metric_states_kept
from epochal.training.validation import Validation

if TYPE_CHECKING:
    from epochal.callbacks.callback import ModelView

TRAIN_HOOKS = ("on_train_batch_begin", "on_train_batch_end")
TEST_HOOKS = ("on_test_batch_begin", "on_test_batch_end")
PREDICT_HOOKS = ("on_predict_batch_begin", "on_predict_batch_end")
_NO_LOGS = Logs()


def run_batches(
    step: Callable[[Any], Any],
    batches: Iterator[Batch | Execution],
    callbacks: CallbackList,
    hooks: tuple[str, str],
    consume: Callable[[Any, Any], None],
    logs_for: Callable[[Any], Any],
    should_stop: Callable[[int], bool] | None = None,
    start: int = 0,
    source: str = "x",
    skipped: Callable[[int, int], bool] | None = None,
) -> None:
    """Run `step` on each batch, firing the batch hooks only if some callback listens to them.

    `start` is the index of the first batch (a resumed epoch continues its numbering). An error raised
    inside torch itself (a shape or dtype the module cannot take) becomes a ValueError naming the
    batch and the argument it came from, `source`; an error from the user's own code passes unchanged.
    `skipped(first, count)` says which batches a `Rollback` drops: drawn and counted, never run.
    """
    begin, end = hooks
    fire_begin, fire_end = callbacks.wants(begin), callbacks.wants(end)
    index = start - 1
    for batch in batches:
        # An Execution (steps_per_execution) holds several batches: its events carry the indices
        # of its first (begin) and last (end) batch, as Keras's.
        count = getattr(batch, "steps", 1)
        first, index = index + 1, index + count
        if skipped is not None and skipped(first, count):
            continue
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
    skipped: Callable[[int, int], bool] | None = None,
) -> dict[str, float]:
    """One pass over `batches` (a training epoch, a validation or an evaluation) -> its mean logs.

    `accumulator` (already holding batches `0..start-1`) continues a resumed epoch; by default the
    pass starts from zero.
    """
    if accumulator is None:
        task.reset_stateful()
        accumulator = MeanAccumulator(task.stateful, sync)
    run_batches(step, batches, callbacks, hooks, accumulator.add, accumulator.batch_logs, should_stop, start,
                source, skipped)
    return accumulator.result()


def evaluate_pass(
    module: torch.nn.Module, pipeline: StepPipeline, task: Task, batches: Iterator[Batch], callbacks: CallbackList,
    sync: LocalSync | Any = LOCAL, source: str = "x",
) -> dict[str, float]:
    """Loss and metrics over `batches` in eval mode without gradients; weights and buffers untouched.

    Test-batch logs are this process's own; the returned means are over every rank's samples.
    """
    callbacks.fire("on_test_begin", _NO_LOGS)
    with evaluating(module):
        logs = run_pass(pipeline.test, batches, callbacks, TEST_HOOKS, task, sync=sync.totals_only(), source=source)
    callbacks.fire("on_test_end", Logs.from_dict(logs))
    return logs


def predict_batches(
    module: torch.nn.Module, step: Callable[[Any], Tree], batches: Iterator[Batch | Execution],
    callbacks: CallbackList, *, modes_per_batch: bool,
) -> Iterator[Tree]:
    """The predict step's outputs batch by batch (an Execution's joined), as they are asked for; nothing is kept.

    With `modes_per_batch`, eval mode and no_grad are set around each batch only, so a caller that runs
    its own code between batches (a stream) does so in its own modes; without, once around the whole
    pass: switching a module's mode walks all its submodules, which costs as much as a small model's
    forward of a batch. `on_predict_end` fires once the last batch has been taken.
    """
    callbacks.fire("on_predict_begin", _NO_LOGS)
    with contextlib.nullcontext() if modes_per_batch else evaluating(module):
        start = 0
        for batch in batches:
            outputs: list[Tree] = []
            with evaluating(module) if modes_per_batch else contextlib.nullcontext():
                run_batches(step, iter((batch,)), callbacks, PREDICT_HOOKS, lambda out, _: outputs.append(out),
                            lambda out: {"outputs": out}, start=start)
            start += getattr(batch, "steps", 1)
            if batch.weight:  # not a placeholder keeping a rank in step (`parallel.sharding.Lockstep`)
                yield outputs[0]
    callbacks.fire("on_predict_end", _NO_LOGS)


@contextlib.contextmanager
def evaluating(module: torch.nn.Module) -> Iterator[None]:
    """`module` in eval mode under no_grad, its own mode restored afterwards."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)


def prefetch(batches: Iterator[Batch]) -> Iterator[Batch] | None:
    """`batches` with its first element already drawn, or None when there is none."""
    first = next(batches, None)
    return None if first is None else itertools.chain([first], batches)


@dataclass
class FitPlan:
    """Everything the epoch loop needs besides the model and the callbacks."""

    train: Adapter
    validations: Mapping[str | None, Adapter]  # each validation set by name (None: the one unnamed set)
    epochs: int
    initial_epoch: int
    validation_freq: int | Sequence[int]
    report_learning_rate: bool
    sync: LocalSync | Any = LOCAL
    state: TrainingState | None = None  # position and backups; a bare one when None
    control: StepControl = field(default_factory=StepControl)  # validation_every, max_steps, max_time

    def validates(self, epoch: int) -> bool:
        if not self.validations:
            return False
        if isinstance(self.validation_freq, int):
            return (epoch + 1) % self.validation_freq == 0
        return epoch + 1 in self.validation_freq


def fit_loop(model: ModelView, pipeline: StepPipeline, task: Task, plan: FitPlan, callbacks: CallbackList) -> None:
    """The epochs of `fit`, firing callbacks in Keras's order (see SPEC "Order of events").

    `plan.state` follows the position; after `on_train_begin` it may restore a backup, and then the
    loop starts at the saved epoch and batch (see `epochal.training.state`). Each epoch's batches
    (and order) are drawn after `on_epoch_begin`'s predecessors, so a callback seeding the generator
    in `on_train_begin` decides the first epoch's order too. `plan.control` adds the validations every
    N batches and the `max_steps`/`max_time` limits (`epochal.training.step_control`).
    """
    module = model.module
    sync, control = plan.sync, plan.control
    state = plan.state if plan.state is not None else TrainingState(model, epochs=plan.epochs, sync=sync)
    # The state tracks the position (backups, signals) after every batch; under torch.distributed it
    # agrees with the other ranks on stopping, so they all stop at the same batch.
    should_stop = partial(control.after_batch, model=model, state=state, sync=sync)
    validation = Validation(plan.validations, lambda batches, source: evaluate_pass(
        module, pipeline, task, batches, callbacks, sync, source), callbacks)
    callbacks.fire("on_train_begin", _NO_LOGS)
    model.stop_training = False
    resume = state.resume()
    if resume is None or not resume.batch:
        state.mark_good()  # where a Rollback returns to when the first batches go wrong
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
        if skip:
            state.mark_good()  # resumed inside this epoch: the good state holds the sums of its batches done
        mid_epoch = partial(_validate_mid_epoch, validation, task, epoch)

        def run(batches: Iterator[Batch], skip: int, accumulator: MeanAccumulator) -> dict[str, float]:
            return run_pass(pipeline.train, control.batches(pipeline.group(batches), mid_epoch, model), callbacks,
                            TRAIN_HOOKS, task, should_stop, sync, accumulator, skip, skipped=state.skipped)

        epoch_logs = _train_pass(run, model, task, plan, state, epoch, batches, accumulator, skip)
        if control.paused:  # out of `max_time`: the epoch stays open, as the backup just written has it
            break
        control.end_pass()
        pipeline.flush()  # a partial gradient-accumulation group is applied before validation
        if plan.train.ran_dry:
            warn_ran_dry("x", plan.train.steps)
            model.stop_training = True
        if plan.validates(epoch):
            epoch_logs.update(validation.run(epoch, control.step))
        if plan.report_learning_rate:
            epoch_logs.update(learning_rates(model.optimizers))
        callbacks.fire("on_epoch_end", epoch, Logs.from_dict(epoch_logs))
        model.stop_training = sync.any(model.stop_training)
        state.end_epoch(epoch, epoch_logs)
        if model.stop_training:
            break
    callbacks.fire("on_train_end", Logs.from_dict(state.epoch_logs))  # the last closed epoch's
    state.finish()


def _validate_mid_epoch(validation: Validation, task: Task, epoch: int, step: int) -> None:
    """A validation point inside a training epoch; the epoch's running metrics are left as they were."""
    with metric_states_kept(task):
        validation.run(epoch, step)


def _train_pass(run: Callable[[Iterator[Batch], int, MeanAccumulator], dict[str, float]], model: ModelView,
                task: Task, plan: FitPlan, state: TrainingState, epoch: int, batches: Iterator[Batch],
                accumulator: MeanAccumulator, skip: int) -> dict[str, float]:
    """The training batches of `epoch` (from batch `skip`) -> its mean logs; run again from an earlier batch
    when a Rollback restores an earlier state of the epoch (`Rewind`)."""
    while True:
        try:
            logs = run(batches, skip, accumulator)
            state.end_pass()
            return logs
        except Rewind as rewind:
            skip = rewind.point.batch
            accumulator = state.begin_epoch(epoch, task, rewind.point, plan.sync)
            if model.stop_training:  # out of retries: the epoch ends at the restored state
                return accumulator.result()
            batches = state.epoch_batches(plan.train, epoch, skip)


def raised_inside_torch(error: BaseException) -> bool:
    """Whether the innermost frame of `error` is torch's own code (not the user's module or step)."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and frames[-1].filename.startswith(_TORCH_DIR)


_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
