"""One batch each: train, test and predict steps. No loop, no callbacks, no host sync."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

from epochal.data.batch import Batch
from epochal.data.structure import Tree, call_module
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


@dataclass(frozen=True)
class StepFunctions:
    """The three steps the loop calls, bound to a module, optimizer and task at compile time."""

    train: Callable[[Batch], torch.Tensor]
    test: Callable[[Batch], torch.Tensor]
    predict: Callable[[Batch], Tree]


def make_steps(module: torch.nn.Module, optimizer: torch.optim.Optimizer, task: Task) -> StepFunctions:
    """Eager steps: plain PyTorch calls, one batch each."""
    return StepFunctions(
        train=partial(train_step, module, optimizer, task),
        test=partial(test_step, module, task),
        predict=partial(predict_step, module),
    )
