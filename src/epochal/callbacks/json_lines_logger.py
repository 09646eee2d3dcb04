"""JSONLinesLogger: one JSON object per epoch (and optionally per batch), easy to stream and to load."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import IO, Any

from epochal.callbacks.callback import Callback
from epochal.callbacks.log_file import count_lines, prepare_log
from epochal.callbacks.run_position import validates_by_step
from epochal.parallel.process import is_main_process


class JSONLinesLogger(Callback):
    """Write `{"epoch": 0, "loss": ..., ...}` lines per epoch, and `{"epoch", "batch", ...}` per batch if asked.

    Epoch and batch indices are 0-based; a batch line is told apart by its `batch` key. A run that validates
    every N batches (`fit(validation_every=N)`) also gets a line per validation, mid-epoch or at an epoch's
    end, told apart by its `step` key (the global step, as `History.validation_steps`). Non-finite
    values (a NaN loss) are written as `null`, so every line is strict JSON. Each line is flushed as
    it is written and the file is fsynced at each epoch's end. `pandas.read_json(path, lines=True)`
    reads the file back.

    The file is touched only when the first line is written. A run resumed by `BackupAndRestore`
    keeps the lines written up to the backup it resumes and appends from there (the lines the
    interrupted run wrote after that backup are dropped: the resumed run writes them again).

    Args:
        filename: The `.jsonl` file.
        per_batch: Also write one line per training batch (with that batch's values). Defaults to `False`.
        append: Add to an existing file instead of emptying it when training begins. Defaults to `False`.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "log.jsonl")
        >>> logger = JSONLinesLogger(path)
        >>> logger.on_train_begin()
        >>> logger.on_epoch_end(0, {"loss": 0.5, "val_loss": float("nan")})
        >>> logger.on_train_end()
        >>> print(open(path).read(), end="")
        {"epoch": 0, "loss": 0.5, "val_loss": null}
    """

    def __init__(self, filename: str | os.PathLike[str], per_batch: bool = False, append: bool = False) -> None:
        super().__init__()
        self.filename = os.fspath(filename)
        self.per_batch = per_batch
        self.append = append
        if per_batch:
            # Listen to batches only when asked, so epoch-only logging costs nothing per batch.
            self.on_train_batch_end = self._on_train_batch_end  # type: ignore[method-assign]
        self._file: IO[str] | None = None
        self._epoch = 0
        self._lines: int | None = None  # lines in the file; None until the first is written
        self._resume_lines: int | None = None

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self._close()
        self._epoch, self._lines, self._resume_lines = 0, None, None

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self._epoch = epoch

    def _on_train_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        self._write({"epoch": self._epoch, "batch": batch, **_finite_or_none(logs)})

    def on_validation_end(self, step: int, logs: Mapping[str, float] | None = None) -> None:
        if validates_by_step(self.params):
            self._write({"epoch": self._epoch, "step": step, **_finite_or_none(logs)})

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self._write({"epoch": epoch, **_finite_or_none(logs)})
        if self._file is not None:
            os.fsync(self._file.fileno())

    def on_train_end(self, logs: Mapping[str, float] | None = None) -> None:
        self._close()

    def _write(self, record: dict[str, Any]) -> None:
        if not is_main_process():  # under torch.distributed rank 0 alone writes the file
            return
        if self._file is None:
            self._lines = prepare_log(self.filename, keep=self._resume_lines, append=self.append)
            self._file = open(self.filename, "a", encoding="utf-8")  # noqa: SIM115
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        self._lines = (self._lines or 0) + 1

    def state_dict(self) -> dict[str, Any]:
        """The lines in the file: a resume keeps those and drops any written later."""
        if self._lines is not None:
            return {"lines": self._lines}
        return {"lines": count_lines(self.filename) if self.append else 0}  # nothing written yet: what it will follow

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._resume_lines = int(state["lines"])  # applied when the first line is written

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _finite_or_none(logs: Mapping[str, float] | None) -> dict[str, float | None]:
    return {key: float(value) if math.isfinite(value) else None for key, value in (logs or {}).items()}
