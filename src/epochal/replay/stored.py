"""Two runs' kept backups compared position by position: the last where both runs were bit-identical (where a
replay can start from) and the first where they were not."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from epochal.callbacks.backup_and_restore import BackupAndRestore
from epochal.replay.divergence import ParameterDifference, parameter_differences
from epochal.replay.forward import same_values


@dataclass(frozen=True)
class StoredComparison:
    """`common`: the last position `(epoch, batch)` (batches of the 0-based epoch done) where both runs' backups
    hold the same weights and optimizer state, with each run's backup file there (None: no such position);
    `first_difference`: the first shared position where they differ, and how the weights differ there;
    `last`: each run's last stored position."""

    common: tuple[int, int] | None = None
    files: tuple[str, str] | None = None
    first_difference: tuple[int, int] | None = None
    differences: list[ParameterDifference] = field(default_factory=list)
    last: tuple[tuple[int, int] | None, tuple[int, int] | None] = (None, None)


def compare_backups(folder_a: str | os.PathLike[str], folder_b: str | os.PathLike[str], *,
                    sources: tuple[str | None, str | None] = (None, None)) -> StoredComparison:
    """Compare the backups two runs kept (`BackupAndRestore(keep=None)`) at every position both have, in order,
    up to the first that differs. A folder without backups has no position in common.

    Args:
        folder_a: Run A's backup folder. folder_b: Run B's.
        sources: The backup file each run was forked from (`fit(resume_from=...)`), or None: a fork's
            history up to its start is its parent's, so that backup counts as the fork's own. Defaults to none.
    """
    positions = [{**_source(source), **_positions(folder)} for folder, source in zip((folder_a, folder_b), sources)]
    shared = sorted(set(positions[0]) & set(positions[1]))
    last = (max(positions[0], default=None), max(positions[1], default=None))
    found = StoredComparison(last=last)
    for position in shared:
        (reader_a, sequence_a), (reader_b, sequence_b) = positions[0][position], positions[1][position]
        a, b = reader_a.read_backup(sequence_a), reader_b.read_backup(sequence_b)
        if same_values(a["optimizers"], b["optimizers"]) and same_values(a["module"], b["module"]):
            files = (_file(reader_a, sequence_a), _file(reader_b, sequence_b))
            found = StoredComparison(position, files, last=last)
            continue
        return StoredComparison(found.common, found.files, position, parameter_differences(a["module"], b["module"]),
                                last)
    return found


def _positions(folder: str | os.PathLike[str]) -> dict[tuple[int, int], tuple[BackupAndRestore, int]]:
    reader = BackupAndRestore(folder)
    if not os.path.isdir(reader.backup_dir):
        return {}
    return {(int(m["epoch"]), int(m["batch"])): (reader, int(m["sequence"])) for m in reader.backups()}


def _source(path: str | None) -> dict[tuple[int, int], tuple[BackupAndRestore, int]]:
    """A backup file (`backup-NNNNNNNN.pt`) as a position of the run forked from it."""
    if path is None:
        return {}
    reader, name = BackupAndRestore(os.path.dirname(path) or "."), os.path.basename(path)
    found = {int(m["sequence"]): m for m in reader.backups()} if os.path.isdir(reader.backup_dir) else {}
    sequence = int(name[len("backup-"):-len(".pt")]) if name.startswith("backup-") and name.endswith(".pt") else -1
    if sequence not in found:
        return {}
    return {(int(found[sequence]["epoch"]), int(found[sequence]["batch"])): (reader, sequence)}


def _file(reader: BackupAndRestore, sequence: int) -> str:
    return os.path.join(reader.backup_dir, f"backup-{sequence:08d}.pt")
