"""One batch each: train, test and predict steps. No loop, no callbacks, no host sync."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from epochal.step.compiled import CompiledSteps
from epochal.data.batch import Batch
from epochal.data.structure import Tree, call_module
from epochal.step.eager import EagerTestStep, EagerTrainStep
from epochal.step.executions import group_batches
from epochal.step.options import StepOptions
from epochal.task import Task


def train_step(module: torch.nn.Module, optimizer: torch.optim.Optimizer, task: Task, batch: Batch) -> torch.Tensor:
    """Forward in training mode, loss, backward, one optimizer update; returns the batch's log values.

    The values are those of this forward pass, i.e. before the update (Keras and TF.js alike).
    """
    optimizer.zero_grad(set_to_none=True)
    outputs = call_module(module, batch.x)
    total, values = task.compute(outputs, batch.y, batch.sample_weight)
    total.backward()
    optimizer.step()
    return values


def test_step(module: torch.nn.Module, task: Task, batch: Batch) -> torch.Tensor:
    """Loss and metrics of one batch without gradients; the caller sets eval mode and no_grad."""
    outputs = call_module(module, batch.x)
    return task.compute(outputs, batch.y, batch.sample_weight)[1]


def predict_step(module: torch.nn.Module, batch: Batch) -> Tree:
    """The module's outputs for one batch."""
    return call_module(module, batch.x)


def _nothing(*args: Any) -> None:
    """The default of the optional step hooks: no warm-up, nothing pending."""


def _ungrouped(batches: Iterator[Batch]) -> Iterator[Batch]:
    return batches


@dataclass(frozen=True)
class StepFunctions:
    """The steps the loop calls, bound to a module, optimizer and task at compile time.

    `prepare(first_batch, planned_batches, validates)` runs before a fit's first event (compilation
    happens there, outside the progress figures); `group(batches)` turns an epoch's batches into what
    `train` takes (stacked for `steps_per_execution`); `flush()` ends a training pass (a partial
    gradient-accumulation group is applied).
    """

    train: Callable[[Batch], torch.Tensor]
    test: Callable[[Batch], torch.Tensor]
    predict: Callable[[Batch], Tree]
    prepare: Callable[[Batch, int | None, bool], None] = _nothing
    group: Callable[[Iterator[Batch]], Iterator[Any]] = _ungrouped
    flush: Callable[[], None] = _nothing


def make_steps(module: torch.nn.Module, optimizer: torch.optim.Optimizer, task: Task,
               options: StepOptions | None = None, device: torch.device | None = None) -> StepFunctions:
    """The steps `options` asks for: plain eager ones by default; see `compiled` and `eager_step`."""
    predict = partial(predict_step, module)
    if options is None or options.is_plain:
        return StepFunctions(train=partial(train_step, module, optimizer, task),
                             test=partial(test_step, module, task), predict=predict)
    device = device if device is not None else next(module.parameters()).device
    group = partial(group_batches, n=options.steps_per_execution)
    if options.jit_compile is False:
        eager = EagerTrainStep(module, optimizer, task, options, device)
        return StepFunctions(train=eager, test=EagerTestStep(module, task, options.precision, device),
                             predict=predict, group=group, flush=eager.flush)
    steps = CompiledSteps(module, optimizer, task, options, device)
    return StepFunctions(train=steps.train, test=steps.test, predict=predict, prepare=steps.prepare,
                         group=group, flush=steps.flush)
