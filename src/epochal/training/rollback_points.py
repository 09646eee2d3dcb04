"""What a `Rollback` callback needs of the training loop: the good states it returns to and the rewind.

The callback reads the losses and chooses the remedy; this keeps the state it returns to — the same
snapshot a backup is made of (`TrainingState.local_snapshot`), copied in memory, or the newest backup
itself — and at a failed batch restores it with `TrainingState.restore` (the resume path) and raises
`Rewind`, on which the epoch loop runs the epoch again from the restored position; the remedy takes
effect when the replay reaches the failed batch. The rollbacks so far (count, skipped batches, rates to
lower) and the History's events outlive the restore.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from epochal.callbacks.rollback import FailedBatch, Rollback
from epochal.training.fork import describe_position
from epochal.training.state import Rewind, TrainingState

if TYPE_CHECKING:
    from epochal.callbacks.history import History


class RollbackPoints:
    """The safe points of a run with a `Rollback`: remember good states, rewind to the last one.

    Args:
        callback: The run's Rollback (at most one).
        state: The run's TrainingState.
        history: The run's History, where each rollback is recorded.
    """

    def __init__(self, callback: Rollback, state: TrainingState, history: History) -> None:
        if callback.restore_from == "backup" and state.backup is None:
            raise ValueError("`Rollback(restore_from=\"backup\")` returns to the newest backup of the run's "
                             "BackupAndRestore, and `callbacks` holds none: add one, or use restore_from=\"memory\".")
        self.callback, self.state, self.history = callback, state, history
        self._memory: dict[str, Any] | None = None

    def good_point(self) -> None:
        """Keep the state as it is now (in memory), or make sure there is a backup to return to."""
        if self.callback.restore_from == "memory":
            self._memory = _copy(self.state.local_snapshot())
        elif self._memory is None:  # at the start: a backup to return to before the first one is due
            self._memory = {}
            if not self.state.backup.backups():  # type: ignore[union-attr]
                self.state.save()

    def after_batch(self, force: bool) -> None:
        verdict = self.callback.check(force)
        if isinstance(verdict, FailedBatch):
            self._rewind(verdict)
        self.callback.lower_if_due(self.state.epoch, self.state.batch)
        if verdict and self.callback.restore_from == "memory":
            self.good_point()

    def before_validation(self) -> None:
        verdict = self.callback.check(True)
        if isinstance(verdict, FailedBatch):
            self._rewind(verdict)

    def skips(self, epoch: int, first: int, count: int) -> bool:
        return self.callback.skips(epoch, first, count)

    def _rewind(self, failed: FailedBatch) -> None:
        """Restore the last good state, carry the rollbacks and events over it, apply the remedy, rewind."""
        state, callback = self.state, self.callback
        ledger, events = callback.ledger(), list(self.history.events)
        if callback.restore_from == "memory":
            point = state.restore(_copy(self._memory), "the last good state in memory")  # type: ignore[arg-type]
        else:
            backup = state.backup
            point = state.restore(backup.read(), backup.backup_dir)  # type: ignore[arg-type, union-attr]
        where = describe_position(state.epoch, state.batch)
        self.history.events = events
        details = callback.rolled_back(failed, ledger)
        self.history.record_event("rollback", failed.epoch, failed.batch, back_to=[state.epoch, state.batch],
                                  **details)
        callback.say(failed, details, where)
        if details["exhausted"]:
            state.model.stop_training = True
        callback.lower_if_due(state.epoch, state.batch)  # when the good state is just before the failed batch
        raise Rewind(point)


def _copy(value: Any) -> Any:
    """`value` with every tensor cloned and every container copied, so training cannot change it."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        if all(type(item) in _PLAIN for item in value):  # numbers (a generator's state): a shallow copy is whole
            return type(value)(value)
        return type(value)(_copy(item) for item in value)
    return value


_PLAIN = frozenset((int, float, bool, str, type(None)))
