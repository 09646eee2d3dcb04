"""The eager train and test steps with compile options: precision, clipping, accumulation, executions.

Gradient accumulation over `k` batches divides each batch's loss by `k` before `backward`, so the
summed gradient of `k` equal-size batches is the gradient of their mean loss: one update equals one
update on a single `k`-times-larger batch (for mean-reduced losses). The logged loss stays each
batch's own, unscaled. A group cut short by the end of a pass (`flush`) is rescaled by `k / m` for
its `m` batches, so it too is the update of their mean loss; then the update is applied.
"""

from __future__ import annotations

import torch

from epochal.step.clipping import clip_gradients_
from epochal.data.batch import Batch
from epochal.data.structure import Tree, call_module
from epochal.step.executions import Execution
from epochal.step.precision import autocast, make_scaler
from epochal.step.options import StepOptions
from epochal.task import Task


class EagerTrainStep:
    """One batch (or Execution) per call: forward under autocast, backward, maybe an update."""

    def __init__(self, module: torch.nn.Module, optimizer: torch.optim.Optimizer, task: Task,
                 options: StepOptions, device: torch.device) -> None:
        self.module, self.optimizer, self.task, self.options = module, optimizer, task, options
        self.device = device
        self.scaler = make_scaler(options.precision, device)
        self.accumulate = options.gradient_accumulation_steps
        self.pending = 0  # batches whose gradients are summed but not yet applied
        self.parameters = [p for group in optimizer.param_groups for p in group["params"]]

    def __call__(self, batch: Batch | Execution) -> torch.Tensor:
        if isinstance(batch, Execution):
            return torch.stack([self.one(part) for part in batch.batches()])
        return self.one(batch)

    def one(self, batch: Batch) -> torch.Tensor:
        if self.pending == 0:
            self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.options.precision, self.device):
            outputs = call_module(self.module, batch.x)
            total, values = self.task.compute(outputs, batch.y, batch.sample_weight)
        if self.accumulate > 1:
            total = total / self.accumulate
        (self.scaler.scale(total) if self.scaler is not None else total).backward()
        self.pending += 1
        if self.pending == self.accumulate:
            self.update()
        return values

    def flush(self) -> None:
        """Apply a partial accumulation group (the end of a pass), as the mean of its batches."""
        if self.pending == 0:
            return
        if self.pending < self.accumulate:
            scale = self.accumulate / self.pending
            for parameter in self.parameters:
                if parameter.grad is not None:
                    parameter.grad.mul_(scale)
        self.update()

    def update(self) -> None:
        self.pending = 0
        if self.scaler is not None:
            if self.options.clips:
                self.scaler.unscale_(self.optimizer)
                clip_gradients_(self.parameters, self.options)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            return
        if self.options.clips:
            clip_gradients_(self.parameters, self.options)
        self.optimizer.step()


class EagerTestStep:
    """Loss and metric values of one batch under the compile's precision; the caller sets no_grad."""

    def __init__(self, module: torch.nn.Module, task: Task, precision: str, device: torch.device) -> None:
        self.module, self.task, self.precision, self.device = module, task, precision, device

    def __call__(self, batch: Batch) -> torch.Tensor:
        return self.values(batch.x, batch.y, batch.sample_weight)

    def values(self, x: Tree, y: Tree, sample_weight: torch.Tensor | None) -> torch.Tensor:
        with autocast(self.precision, self.device):
            return self.task.compute(call_module(self.module, x), y, sample_weight)[1]
