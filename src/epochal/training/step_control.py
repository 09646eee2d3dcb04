"""Step-based control of a fit: `validation_every` (validate every N training batches), `max_steps` and
`max_time`.

A *step* is a training batch (with `steps_per_execution`, an execution counts its batches). `step` counts
them across epochs as Keras's global step does: from `initial_epoch * steps` when the steps per epoch are
known (`first_global_batch`), else from 0; a resumed run continues the count (it is backed up with the run).

- **validation_every=N**: when a multiple of N is reached, that point's validation runs once the next
  batch of the epoch has been drawn, before its hooks — so a point on an epoch's last batch is left to the
  epoch's own validation (`validation_freq` decides it) instead of validating the same weights twice, and
  the point itself stays a safe point (a backup taken there holds the pending validation, which a resumed
  run then runs first). The training epoch's running metrics are kept across it.
- **max_steps**: the run trains at most this many batches (a resumed run counts what it did before), then
  stops as `model.stop_training` does: the epoch is closed (validated, `on_epoch_end`), then `on_train_end`.
- **max_time**: a wall-clock budget in seconds from the start of `fit`, checked after every batch (every
  rank agrees on it). When spent, training stops at that batch boundary *without* closing the epoch: a
  `BackupAndRestore` backup is written there, `on_train_end` runs, and `fit` returns; running the same
  `fit` again resumes exactly where it stopped (with a fresh budget), as after a SIGTERM.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from time import monotonic
from typing import TYPE_CHECKING, Any, TypeVar

from epochal.callbacks.callback import Callback

if TYPE_CHECKING:
    from epochal.callbacks.callback import ModelView
    from epochal.task import Task
    from epochal.training.state import TrainingState

T = TypeVar("T")


class StepControl(Callback):
    """The step count, validation points and limits of one fit; the loop calls it at every safe point.

    It is a Callback only so that the training state backs its count up with the callbacks' states; it
    listens to no hook.

    Args:
        validation_every: Validate after every this many training batches. Defaults to `None`.
        max_steps: Train at most this many batches. Defaults to `None`.
        max_time: Stop, resumably, once this many seconds have passed since the fit began. Defaults to `None`.
        first_step: The global step the run starts from. Defaults to `0`.
    """

    def __init__(self, *, validation_every: int | None = None, max_steps: int | None = None,
                 max_time: float | None = None, first_step: int = 0) -> None:
        super().__init__()
        self.validation_every, self.max_steps, self.first_step = validation_every, max_steps, first_step
        self.done = 0  # training batches this run has done
        self.pending = False  # a validation point was reached; it runs before the next batch of the epoch
        self.paused = False  # `max_time` ran out: stopped mid-run, resumable
        self._deadline = None if max_time is None else monotonic() + max_time

    @property
    def step(self) -> int:
        """Training batches done, counted as the global step (see the module's docstring)."""
        return self.first_step + self.done

    def after_batch(self, batches: int, model: ModelView, state: TrainingState, sync: Any) -> bool:
        """The safe point after a call of the train step that ran `batches` batches: count them, note a
        validation point, then let `state` back up (forced when `max_time` ran out) -> whether to stop."""
        before = self.step
        self.done += batches
        every = self.validation_every
        if every is not None and before // every != self.step // every:
            self.pending = True
        self.paused = self._deadline is not None and sync.any(monotonic() >= self._deadline)
        self._reached_max_steps(model)
        return state.after_batch(batches, save=self.paused) or self.paused

    def batches(self, batches: Iterator[T], validate: Callable[[int], None], model: ModelView) -> Iterator[T]:
        """`batches`, with each pending validation run (`validate(step)`) once the next batch is drawn, and
        none drawn past `max_steps` (a run resumed at that point stops at once)."""
        while not self._reached_max_steps(model):
            batch = next(batches, None)
            if batch is None:
                break
            if self.pending:
                self.pending = False
                validate(self.step)
            yield batch
        self.end_pass()

    def end_pass(self) -> None:
        """A training pass ended: a point on its last batch is left to the epoch's own validation."""
        self.pending = False

    def _reached_max_steps(self, model: ModelView) -> bool:
        if self.max_steps is None or self.done < self.max_steps:
            return False
        model.stop_training = True
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"done": self.done, "pending": self.pending}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.done, self.pending = int(state["done"]), bool(state["pending"])


@contextlib.contextmanager
def metric_states_kept(task: Task) -> Iterator[None]:
    """The metrics computed over a whole pass (AUC, precision...) as they were, after a validation inside
    a training epoch reset and used them: the epoch's own values stay exact."""
    saved = [metric.state_dict() for _, metric in task.stateful()]
    try:
        yield
    finally:
        for (_, metric), state in zip(task.stateful(), saved):
            metric.load_state_dict(state)
