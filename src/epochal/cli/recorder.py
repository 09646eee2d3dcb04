"""The callback that keeps a run folder's history current after every epoch, so any run can be read."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from epochal.callbacks.callback import Callback
from epochal.cli import run_folder
from epochal.callbacks.history import History


class RunRecorder(Callback):
    """After each epoch, the history so far (with its validations by step) as CSV and JSON, and the training
    time spent.

    It keeps its own History (and `state_dict()`), so a run resumed by BackupAndRestore carries on
    the files and the clock where they were; the run's events (fork, rollbacks) are the model History's.

    Args:
        folder: The run folder.
    """

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder
        self.history = History()
        self.seconds = 0.0

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self.history.on_train_begin()
        self.history.params = dict(self.params)
        self.seconds = 0.0
        self._started = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self.history.on_epoch_begin(epoch, logs)

    def on_validation_end(self, step: int, logs: Mapping[str, float] | None = None) -> None:
        self.history.on_validation_end(step, logs)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self.history.on_epoch_end(epoch, logs)
        # What happened to the run itself (a fork, a rollback) is recorded in the model's History.
        self.history.events = list(getattr(getattr(self.model, "history", None), "events", []))
        self.seconds = time.perf_counter() - self._started
        run_folder.write_history(self.folder, self.history)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history.state_dict(), "seconds": time.perf_counter() - self._started}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.history.load_state_dict(state["history"])
        self.seconds = float(state["seconds"])
        self._started = time.perf_counter() - self.seconds
