"""CSVLogger: one row per epoch, durable as soon as the epoch ends, columns aligned even when keys come late."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from typing import Any

from epochal.callbacks.callback import Callback
from epochal.callbacks.log_file import count_lines, prepare_log
from epochal.parallel.process import is_main_process
from epochal.saving import atomic_write

_MISSING = "NA"  # what Keras writes for a key an epoch's logs lack; pandas reads it as NaN


class CSVLogger(Callback):
    """Append each epoch's logs to a CSV file: an `epoch` column (0-based, as Keras) then one per key.

    Columns are the first epoch's keys in sorted order (as Keras). A key that appears later (e.g.
    `val_loss` on the second epoch with `validation_freq=2`) is added as a new last column: the file
    is rewritten once, atomically, with the new header and `NA` in the earlier rows, so the file is
    always a well-formed table. An epoch lacking a known key gets `NA` there. Each row is flushed and
    fsynced when its epoch ends, so a crash loses nothing already written.

    The file is touched only when the first row is written. A run resumed by `BackupAndRestore`
    keeps the rows written up to the backup it resumes and appends from there: the rows the
    interrupted run wrote after that backup are dropped, since the resumed run writes those epochs
    again — each epoch is in the file once, and a refused resume leaves the file as it was.

    Args:
        filename: The CSV file.
        separator: The field delimiter. Defaults to `","`.
        append: Keep an existing file's rows (and columns) and add to them, e.g. when resuming;
            otherwise the file is emptied when training begins. Defaults to `False`.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "log.csv")
        >>> logger = CSVLogger(path)
        >>> logger.on_train_begin()
        >>> logger.on_epoch_end(0, {"loss": 0.5})
        >>> logger.on_epoch_end(1, {"loss": 0.25, "val_loss": 0.75})
        >>> print(open(path).read(), end="")
        epoch,loss,val_loss
        0,0.5,NA
        1,0.25,0.75
    """

    def __init__(self, filename: str | os.PathLike[str], separator: str = ",", append: bool = False) -> None:
        super().__init__()
        self.filename = os.fspath(filename)
        self.separator = separator
        self.append = append
        self._columns: list[str] = []
        self._rows: int | None = None  # data rows in the file; None until the first is written
        self._resume_rows: int | None = None

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self._columns, self._rows, self._resume_rows = [], None, None

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        if not is_main_process():  # under torch.distributed rank 0 alone writes the file
            return
        if self._rows is None:
            self._open()
        values: dict[str, object] = {"epoch": epoch, **(logs or {})}
        new = sorted(key for key in values if key not in self._columns)
        if new and not self._columns:
            new.remove("epoch")
            self._columns = ["epoch", *new]
            self._write_row(self._columns)
        elif new:
            self._add_columns(new)
        self._write_row([values.get(column, _MISSING) for column in self._columns])
        self._rows = (self._rows or 0) + 1

    def _open(self) -> None:
        """Empty the file (or keep it: `append`, or a resume's rows) before this run's first row."""
        resume = self._resume_rows
        prepare_log(self.filename, keep=None if resume is None else resume + 1 if resume else 0, append=self.append)
        rows = self._read_rows() if os.path.exists(self.filename) else []
        self._columns = rows[0] if rows else []
        self._rows = max(len(rows) - 1, 0)

    def state_dict(self) -> dict[str, Any]:
        """The data rows in the file: a resume keeps those and drops any written later."""
        if self._rows is not None:
            return {"rows": self._rows}
        existing = count_lines(self.filename) if self.append else 0
        return {"rows": max(existing - 1, 0)}  # nothing written yet: what the first row will follow

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._resume_rows = int(state["rows"])  # applied when the first row is written

    def _add_columns(self, new: list[str]) -> None:
        """Rewrite the file with `new` as extra last columns, `NA` in the rows already written."""
        rows = self._read_rows()
        self._columns = [*self._columns, *new]
        with atomic_write(self.filename, text=True) as handle:
            writer = csv.writer(handle, delimiter=self.separator)
            writer.writerow(self._columns)
            for row in rows[1:]:
                writer.writerow(row + [_MISSING] * (len(self._columns) - len(row)))

    def _read_rows(self) -> list[list[str]]:
        with open(self.filename, newline="", encoding="utf-8") as handle:
            return list(csv.reader(handle, delimiter=self.separator))

    def _write_row(self, row: Sequence[object]) -> None:
        with open(self.filename, "a", newline="", encoding="utf-8") as handle:
            csv.writer(handle, delimiter=self.separator).writerow(row)
            handle.flush()
            os.fsync(handle.fileno())
