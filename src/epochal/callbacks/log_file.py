"""Log files that survive a resume: opened at the first write (so a refused resume leaves them as they
were), then rewound to where the backup being resumed had left them (so no line is doubled or lost)."""

from __future__ import annotations

import os
import warnings

from epochal.files.temporary import remove_orphans
from epochal.saving import atomic_write


def prepare_log(path: str, *, keep: int | None, append: bool) -> int:
    """Get `path` ready for its first line of this run; returns how many lines it already holds.

    Args:
        path: The log file.
        keep: When resuming, the lines the file held at the backup: later lines (written after the
            backup by the interrupted run) are dropped. `None` when not resuming.
        append: Not resuming: keep what the file holds (else it is emptied).
    """
    remove_orphans(os.path.dirname(os.path.abspath(path)))  # a rewrite killed half-way
    if keep is None and not append:
        with atomic_write(path, text=True):
            pass
        return 0
    lines = _read_lines(path)
    if keep is None:
        return len(lines)
    if len(lines) < keep:
        warnings.warn(f"{path} holds {len(lines)} lines but held {keep} when the resumed backup was written; "
                      "the resumed run appends after them.", stacklevel=4)
    elif len(lines) > keep:
        with atomic_write(path, text=True) as handle:
            handle.write("".join(lines[:keep]))
    return min(len(lines), keep)


def count_lines(path: str) -> int:
    """The lines `path` holds (0 when it does not exist)."""
    return len(_read_lines(path))


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return handle.read().splitlines(keepends=True)
    except FileNotFoundError:
        return []
