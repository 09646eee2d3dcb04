"""Which of ModelCheckpoint's files to keep (the best k, the last k) and the `best.json` pointer to the best.

The order of events makes every state on disk safe: a new checkpoint is renamed into place first,
then the pointer is rewritten (atomically) if the best changed, and only then are files that fell
out of both sets removed. The pointer's file is always kept, so it always names a complete checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from epochal.saving import atomic_write

POINTER = "best.json"


def make_retention(filepath: str, *, keep_best: int | None, keep_last: int | None, mode: str) -> Retention | None:
    """ModelCheckpoint's retention for `filepath`, or None when it keeps every file; bad values are errors."""
    for name, value in (("keep_best", keep_best), ("keep_last", keep_last)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"`{name}` must be a positive integer or None. Received: {name}={value!r}")
    if keep_best is None and keep_last is None:
        return None
    folder, name = os.path.split(filepath)
    if "{" in folder or "{" not in name:
        raise ValueError(
            "`keep_best` and `keep_last` need checkpoints in one folder, each under its own name: a `filepath` "
            "whose file name (not folder) has a field such as {epoch:02d}, e.g. 'ckpt/{epoch:02d}.pt'. "
            f"Received: filepath={filepath!r}")
    return Retention(keep_best=keep_best, keep_last=keep_last, mode=mode, pointer=os.path.join(folder, POINTER))


@dataclass
class Saved:
    """One file the callback wrote: its monitored value (None when absent) and when (0-based indices)."""

    path: str
    value: float | None
    sequence: int
    epoch: int
    batch: int | None


class Retention:
    """Keeps the `keep_best` files with the best `value` (by `mode`) and the `keep_last` newest ones.

    With `keep_best`, `pointer` (a JSON file) names the best file, its value and position.

    Example:
        >>> retention = Retention(keep_best=1, keep_last=1, mode="min", pointer=None)
        >>> for epoch, value in enumerate([0.5, 0.3, 0.4]):
        ...     retention.saved(f"ckpt-{epoch}.pt", value, epoch, None, files=False)
        >>> sorted(record.path for record in retention.records)
        ['ckpt-1.pt', 'ckpt-2.pt']
    """

    def __init__(self, *, keep_best: int | None, keep_last: int | None, mode: str, pointer: str | None) -> None:
        self.keep_best, self.keep_last = keep_best or 0, keep_last or 0
        self.mode = mode
        self.pointer = pointer
        self.records: list[Saved] = []
        self._sequence = 0
        self._pointed: Saved | None = None  # what the pointer file names now

    def reset(self) -> None:
        self.records, self._sequence, self._pointed = [], 0, None

    def saved(self, path: str, value: float | None, epoch: int, batch: int | None, *, files: bool = True) -> None:
        """Record a file just renamed into place; with `files`, update the pointer and remove what is not kept."""
        self._sequence += 1
        self.records = [record for record in self.records if record.path != path]  # rewritten: its content is new
        self.records.append(Saved(path, value, self._sequence, epoch, batch))
        best = self._best()
        kept = {id(record) for record in best[:self.keep_best] + self.records[len(self.records) - self.keep_last:]}
        doomed = [record for record in self.records if id(record) not in kept]
        self.records = [record for record in self.records if id(record) in kept]
        if not files:
            return
        if self.keep_best and best[0].value is not None and best[0] != self._pointed:
            self._write_pointer(best[0])
            self._pointed = best[0]
        for record in doomed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(record.path)

    def _best(self) -> list[Saved]:
        """The records from best to worst; a missing value ranks last, ties go to the earlier file."""
        sign = 1.0 if self.mode == "min" else -1.0

        def rank(record: Saved) -> tuple[float, int]:
            return (math.inf if record.value is None else sign * record.value), record.sequence

        return sorted(self.records, key=rank)

    def _write_pointer(self, best: Saved) -> None:
        with atomic_write(self.pointer, text=True) as handle:  # type: ignore[arg-type]
            handle.write(json.dumps({"path": best.path, "file": os.path.basename(best.path), "value": best.value,
                                     "epoch": best.epoch, "batch": best.batch}, indent=1) + "\n")

    def state_dict(self) -> dict[str, Any]:
        return {"records": [asdict(record) for record in self.records], "sequence": self._sequence}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.records = [Saved(**record) for record in state["records"]]
        self._sequence = int(state["sequence"])
