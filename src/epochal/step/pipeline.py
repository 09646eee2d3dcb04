"""The one step pipeline: the model's train, test and predict steps (the default ones or a user's), with
every compile option as a layer around them.

For each training batch the pipeline sets the batch's share of the global batch (distributed), lets
the strategy broadcast buffers, runs `train_step((x, y, sample_weight))` under the precision's autocast,
checks that every `backward` was applied, and stacks the returned logs (`StepValues`). Gradients,
accumulation, loss scaling, clipping and the gradient sync live in `Gradients`, which `train_step`
reaches through `Model.backward` / `Model.apply_gradients`. `steps_per_execution` groups batches
(`executions`), `jit_compile` compiles this same call (`compiled`), `cuda_graphs` replays it, and
`checkpoint_modules` recomputes chosen submodules' activations in the backward (`activation_checkpointing`).
No loop, no callbacks, no host sync.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from epochal.data.batch import Batch
from epochal.data.structure import Tree, join_rows
from epochal.step.activation_checkpointing import ActivationCheckpointing
from epochal.step.compiled import CompiledSteps
from epochal.step.executions import Execution, group_batches
from epochal.step.gradients import GradientSync, Gradients
from epochal.step.options import StepOptions
from epochal.step.precision import autocast
from epochal.step.values import StepValues, stack_values

StepData = tuple[Tree, Tree | None, torch.Tensor | None]


class Strategy(GradientSync, Protocol):
    """What the pipeline asks of the distribution strategy besides the gradient sync."""

    def sync_buffers(self) -> None:
        """Make every rank's buffers rank 0's before a training forward (DDP's `broadcast_buffers`)."""

    def largest(self, value: float) -> float:
        """The largest of every rank's `value` (a decision every rank must take alike)."""


@dataclass(frozen=True)
class ModelSteps:
    """The model's step methods, bound: Keras's `train_step`, `test_step` and `predict_step`.

    `custom_train` says whether `train_step` is the user's own; its first batch in a fit is guarded
    (an error restores the weights and optimizer state it had updated).
    """

    train: Callable[[StepData], Mapping[str, Any]]
    test: Callable[[StepData], Mapping[str, Any]]
    predict: Callable[[StepData], Tree]
    custom_train: bool = False


class StepPipeline:
    """What the loop calls for each batch: `train`, `test` and `predict`, with the compile options applied.

    Before a fit, `prepare(example, planned_batches, validates)` decides and does the compilation (on an
    example batch, state restored afterwards); `group(batches)` stacks batches for
    `steps_per_execution`; `flush()` ends a training pass (a partial accumulation group is applied).
    """

    def __init__(self, steps: ModelSteps, gradients: Gradients, options: StepOptions, module: torch.nn.Module,
                 device: torch.device, strategy: Strategy) -> None:
        self.steps, self.gradients, self.options = steps, gradients, options
        self.module, self.device, self.strategy = module, device, strategy
        # Each step's log names, fixed by its first batch. Both entries exist from the start: a compiled
        # graph guards on the dict it reads, so it must not change size when the other step first runs.
        self._keys: dict[str, tuple[str, ...] | None] = {"train_step": None, "test_step": None}
        self._guard_next = False
        #: Whether the batch being stepped counts in the logs: False for a rank's placeholder in a short
        #: distributed batch, whose metric state must not change (its logs already weigh nothing).
        self.batch_counts = True
        self.compiled = CompiledSteps(self, module, gradients, options, device, strategy.largest)
        self.checkpointing = ActivationCheckpointing(module, options.checkpoint_modules)

    # -- one batch ----------------------------------------------------------------------------

    def train(self, batch: Batch | Execution) -> StepValues:
        """One batch (or Execution) of training -> its log values (a row per batch for an Execution)."""
        with self.checkpointing.active():
            values = self.compiled.train(batch)
            if values is not None:
                return values
            if isinstance(batch, Execution):
                return StepValues.rows([self._guarded_train(part) for part in batch.batches()])
            return self._guarded_train(batch)

    def train_one(self, batch: Batch) -> StepValues:
        """The train step on one batch, eagerly or as traced by `jit_compile` (the same code)."""
        self.gradients.share = batch.loss_scale
        self.batch_counts = batch.loss_scale != 0.0
        self.strategy.sync_buffers()
        with autocast(self.options.precision, self.device):
            result = self.steps.train((batch.x, batch.y, batch.sample_weight))
        self.gradients.end_step()
        return self._values(result, "train_step")

    def test(self, batch: Batch) -> StepValues:
        """Loss and metrics of one batch; the caller sets eval mode and no_grad."""
        values = self.compiled.test(batch)
        return values if values is not None else self.test_one(batch)

    def test_one(self, batch: Batch) -> StepValues:
        self.batch_counts = batch.loss_scale != 0.0
        with autocast(self.options.precision, self.device):
            result = self.steps.test((batch.x, batch.y, batch.sample_weight))
        return self._values(result, "test_step")

    def predict(self, batch: Batch | Execution) -> Tree:
        """The predict step's outputs for one batch, or an Execution's batches joined (the module's own
        precision; eval mode, no_grad)."""
        outputs = self.compiled.predict(batch)
        if outputs is not None:
            return outputs
        if isinstance(batch, Execution):
            return join_rows([self.predict_one(part) for part in batch.batches()])
        return self.predict_one(batch)

    def predict_one(self, batch: Batch) -> Tree:
        return self.steps.predict((batch.x, None, None))

    def _guarded_train(self, batch: Batch) -> StepValues:
        if not self._guard_next:
            return self.train_one(batch)
        self._guard_next = False
        self.gradients.guard()
        try:
            values = self.train_one(batch)
        except BaseException:
            self.gradients.release(restore=True)
            raise
        self.gradients.release(restore=False)
        return values

    def keys(self, step: str) -> tuple[str, ...]:
        """The log names `step` (`"train_step"` or `"test_step"`) returned on its first batch."""
        keys = self._keys[step]
        assert keys is not None, f"{step} has not run yet"
        return keys

    def known_keys(self, step: str) -> tuple[str, ...] | None:
        """`keys(step)` once `step` has run (None before)."""
        return self._keys[step]

    def _values(self, result: Any, step: str) -> StepValues:
        values = stack_values(result, step, self._keys[step])
        if self._keys[step] is None:
            self._keys[step] = values.names
        return values

    # -- around a pass ------------------------------------------------------------------------

    def prepare(self, example: Batch | None, planned_batches: int | None, validates: bool) -> None:
        """Before a fit: guard a user's first train step, and compile when `jit_compile` asks for it."""
        self._guard_next = self.steps.custom_train
        with self.checkpointing.active():  # the graphs are traced as the steps will run
            self.compiled.prepare(example, planned_batches, validates)

    def prepare_inference(self, planned_batches: int | None) -> None:
        """Before `evaluate` or `predict`: whether `jit_compile` compiles their steps (see `compiled`)."""
        self.compiled.prepare_inference(planned_batches)

    def group(self, batches: Iterator[Batch]) -> Iterator[Batch | Execution]:
        return group_batches(batches, self.options.steps_per_execution)

    def flush(self) -> None:
        """End a training pass: apply a partial accumulation group, as the mean of its batches."""
        self.gradients.flush()
        self.compiled.forget_steps()

    # -- state, for backups -------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return self.gradients.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.gradients.load_state_dict(state)
        self.compiled.forget_steps()

