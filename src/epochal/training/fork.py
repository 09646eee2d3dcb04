"""Forking a run: continue another run's backup (or checkpoint) with some settings changed.

Exact resume makes this possible: from the parent's backup the fork takes the weights, every optimizer's
state, the callbacks' state, the History, the random generators and the position in the data, so up to
the fork point it *is* the parent, and with no setting changed it goes on exactly as the parent did. What
the fork's own `fit` call and `compile` set differently from the parent — the learning rate or another
optimizer setting, `batch_size`, `epochs`, a callback, clipping — takes effect from there; which
settings may differ is decided by `resume_check.fork_differences`. The parent's files are only read.
"""

from __future__ import annotations

import os
import re
import warnings
from typing import TYPE_CHECKING, Any

from epochal.callbacks.backup_and_restore import BackupAndRestore
from epochal.saving import _read_checkpoint
from epochal.training.resume_check import changed_settings, fork_differences, fork_message
from epochal.training.rng import capture_rng
from epochal.training.state import FORMAT, VERSION, ResumePoint, TrainingState

if TYPE_CHECKING:
    from epochal.callbacks.history import History

_BACKUP_FILE = re.compile(r"^backup-(\d{8})\.pt$")


def describe_position(epoch: int, batch: int) -> str:
    """A backup's position in words, epochs counted from 1 as progress lines print them.

    Example:
        >>> describe_position(0, 0), describe_position(3, 0), describe_position(3, 5)
        ('before the first epoch', 'after epoch 3', 'after batch 5 of epoch 4')
    """
    if not batch:
        return f"after epoch {epoch}" if epoch else "before the first epoch"
    return f"after batch {batch} of epoch {epoch + 1}"


def find_backup(folder: str | os.PathLike[str], epoch: int, batch: int | None = None) -> str:
    """The backup file in `folder` written after epoch `epoch` (counted from 1, as printed), or after
    `batch` batches of epoch `epoch`; a ValueError listing the backups there when there is none.

    Args:
        folder: A `BackupAndRestore` folder (a run kept with `keep=None` has one backup per epoch).
        epoch: The epoch, counted from 1; `0` with no `batch` is before any training (never backed up).
        batch: Batches done in that epoch. Defaults to `None`: its end.
    """
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < (0 if batch is None else 1):
        raise ValueError(f"`epoch` must be a positive integer (epochs are counted from 1). Received: epoch={epoch!r}")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ValueError(f"`batch` must be a positive integer or None (the end of the epoch). Received: batch={batch!r}")
    wanted = (epoch, 0) if batch is None else (epoch - 1, batch)
    reader = BackupAndRestore(folder)
    manifests = reader.backups() if os.path.isdir(reader.backup_dir) else []
    if not manifests:
        raise ValueError(f"{reader.backup_dir!r} holds no backup to fork from: train the parent with "
                         "`BackupAndRestore(..., keep=None, delete_checkpoint=False)`, or with `epochal train "
                         "--keep-backups all` (the default).")
    positions = [(int(m["epoch"]), int(m["batch"])) for m in manifests]
    matches = [m for m, position in zip(manifests, positions) if position == wanted]
    if matches:
        return os.path.join(reader.backup_dir, str(matches[-1]["file"]))
    last = max(positions)
    if wanted > last:
        raise ValueError(f"Cannot fork {describe_position(*wanted)}: the run's last backup is "
                         f"{describe_position(*last)}, so that point is past its end.")
    shown = ", ".join(describe_position(*position) for position in sorted(set(positions)))
    raise ValueError(f"No backup in {reader.backup_dir!r} {describe_position(*wanted)}; there are backups {shown}. "
                     "For points inside an epoch, train the parent with `BackupAndRestore(save_freq=N)`.")


class Fork:
    """The start of a fork: the parent's state, read and verified at once, loaded when the fit begins.

    Args:
        source: A `BackupAndRestore` backup file (`backup-NNNNNNNN.pt`), a backup folder (its newest
            backup) or a full `ModelCheckpoint` file saved at an epoch's end (which holds no random
            state, callbacks or History: the fork then draws its own data order from there).
        history: The fork's History, where the fork is recorded as an event.
    """

    def __init__(self, source: str | os.PathLike[str], history: History) -> None:
        if not isinstance(source, (str, os.PathLike)):
            raise TypeError(f"`resume_from` must be a path to a backup, a backup folder or a checkpoint. "
                            f"Received: resume_from={source!r}")
        self.path = os.fspath(source)
        self.history = history
        self.snapshot = read_fork_source(self.path)

    def refuse_writing_into(self, backup_dir: str) -> None:
        """A fork never writes into the parent's backup folder: the parent stays as it was."""
        folder = self.path if os.path.isdir(self.path) else os.path.dirname(self.path)
        if os.path.realpath(folder) == os.path.realpath(backup_dir):
            raise ValueError(f"The fork's BackupAndRestore writes into {backup_dir!r}, where the run it forks "
                             "(`resume_from`) keeps its backups: give the fork a folder of its own.")

    def begin(self, state: TrainingState) -> ResumePoint:
        """Check the fork's settings against the parent's, load the parent's state, then set what changed."""
        snapshot, model = self.snapshot, state.model
        now = state.fingerprint.value() if state.fingerprint is not None else {}
        position = snapshot["position"]
        inside_pass = bool(position["batch"]) or bool((snapshot.get("data") or {}).get("position"))
        refused, changes = fork_differences(snapshot["fingerprint"], now, position, inside_pass)
        if refused:
            raise ValueError(fork_message(self.path, refused))
        settings = {name: [dict(group) for group in optimizer.param_groups]
                    for name, optimizer in model.optimizers.items()}  # before the parent's replace them
        if snapshot["ranks"] is None:  # a checkpoint: this process's generators as they are
            own = {"rng": capture_rng(), "epoch_rng": None, "accumulator": {}, "steps": None}
            snapshot = {**snapshot, "ranks": [own] * getattr(state.sync, "world_size", 1)}
        point = state.restore(snapshot, self.path, forked=True)
        for name, group, key in changed_settings(snapshot["fingerprint"].get("optimizers", {}),
                                                 now.get("optimizers", {})):
            model.optimizers[name].param_groups[group][key] = settings[name][group][key]
        details: dict[str, Any] = {"source": self.path, "changes": changes}
        if point.callbacks_note:  # "Resuming with other callbacks than the backup's (...): <what differs>."
            details["callbacks"] = point.callbacks_note.partition("): ")[2] or point.callbacks_note
        self.history.record_event("fork", position["epoch"], position["batch"], **details)
        return point


def read_fork_source(path: str) -> dict[str, Any]:
    """The snapshot a fork starts from (see `Fork`); a clear error for a missing, damaged or foreign file."""
    if os.path.isdir(path):
        reader = BackupAndRestore(path)
        manifests = reader.backups()
        if not manifests:
            raise ValueError(f"`resume_from={path!r}` is a folder without any backup in it.")
        return _current(reader.read_backup(int(manifests[-1]["sequence"])), path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"`resume_from={path!r}`: no such backup, backup folder or checkpoint.")
    name = _BACKUP_FILE.match(os.path.basename(path))
    if name is not None:
        return _current(BackupAndRestore(os.path.dirname(path) or ".").read_backup(int(name.group(1))), path)
    return _checkpoint_snapshot(path)


def _current(snapshot: dict[str, Any], path: str) -> dict[str, Any]:
    if snapshot.get("version") != VERSION:
        raise ValueError(f"The backup {path!r} has format version {snapshot.get('version')!r}; this epochal forks "
                         f"version {VERSION}. Fork it with the epochal that wrote it.")
    return snapshot


def _checkpoint_snapshot(path: str) -> dict[str, Any]:
    """A full `ModelCheckpoint` file as the snapshot a fork starts from (no RNG, callbacks or History)."""
    try:
        checkpoint = _read_checkpoint(path)
    except ValueError as error:
        raise ValueError(f"`resume_from={path!r}` is neither an epochal backup nor a checkpoint: {error}") from None
    metadata = checkpoint["metadata"]
    if not isinstance(metadata.get("epoch"), int) or checkpoint["optimizers"] is None:
        raise ValueError(f"{path!r} was not written by `ModelCheckpoint` during a fit (no position or no optimizer "
                         "state): a fork needs a full ModelCheckpoint file or a BackupAndRestore backup.")
    if metadata.get("batch") is not None:
        raise ValueError(f"{path!r} was saved inside an epoch (batch {metadata['batch']}), and a checkpoint holds no "
                         "data order to continue it with: fork from a checkpoint saved at an epoch's end, or from a "
                         "BackupAndRestore backup.")
    warnings.warn(f"Forking from the checkpoint {path!r}: it holds the weights and optimizer state but no random "
                  "state, callbacks or History, so the fork draws its data order and dropout from the generators as "
                  "they are now and will not repeat the parent even with no setting changed. A BackupAndRestore "
                  "backup holds all of it.", stacklevel=4)
    return {"format": FORMAT, "version": VERSION, "fingerprint": checkpoint["fingerprint"],
            "position": {"epoch": metadata["epoch"] + 1, "batch": 0, "finished": False, "stopped": False},
            "epoch_logs": dict(metadata.get("logs", {})), "data": None, "module": checkpoint["module"],
            "optimizers": checkpoint["optimizers"], "ranks": None, "callbacks": []}
