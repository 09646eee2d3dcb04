"""The callback that keeps a run folder current after every epoch, so an interrupted run can be read and resumed."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from epochal.callbacks.callback import Callback
from epochal.cli import run_folder
from epochal.history import History


class RunRecorder(Callback):
    """After each epoch: the history so far (CSV and JSON) and a checkpoint to resume from exactly.

    It keeps its own History, started from `previous` when resuming, so the files always hold
    the whole run. The checkpoint (`checkpoint.pt`, a `Model.save` file: weights and optimizer
    state, with the epoch, time, history, torch's random state and `extra_state()` as metadata,
    consistent with each other) is what `train --resume` continues from.

    Args:
        folder: The run folder.
        previous: The history of the epochs already trained. Defaults to `None`.
        seconds: Training time already spent on them. Defaults to `0.0`.
        extra_state: Returns more state to keep in the checkpoint (the caller's other callbacks).
            Defaults to `None`.
    """

    def __init__(self, folder: Path, previous: History | None = None, seconds: float = 0.0,
                 extra_state: Callable[[], dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.folder = folder
        self.history = History()
        if previous is not None:
            self.history.load_state_dict(previous.state_dict())
            self.history.params = previous.params
        self.seconds = seconds
        self.extra_state = extra_state or dict

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self.history.params = dict(self.params)
        self._started = time.perf_counter() - self.seconds

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self.history.on_epoch_end(epoch, logs)
        self.seconds = time.perf_counter() - self._started
        run_folder.write_history(self.folder, self.history)
        self.model.save(self.folder / run_folder.CHECKPOINT, metadata={  # type: ignore[union-attr]
            "epoch": epoch, "seconds": self.seconds, "history": self.history.state_dict(),
            "rng": torch.random.get_rng_state(), **self.extra_state()})
