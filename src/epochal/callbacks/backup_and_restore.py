"""BackupAndRestore: back the whole run up as it trains, and continue exactly where a killed run stopped."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from epochal.callbacks.callback import Callback
from epochal.files.lock import FolderLock
from epochal.files.temporary import remove_orphans
from epochal.parallel.process import is_main_process
from epochal.parallel.sharded_state import Sync, load_shards, remove_shards, remove_shards_partial, save_shards
from epochal.saving import PickledPayloadError, _check_plain, atomic_write, load_plain

_NAME = re.compile(r"^backup-(\d{8})\.(pt|json|shards|shards\.partial)$")
_KEEP = 2


class BackupAndRestore(Callback):
    """Keras's `BackupAndRestore`, exact: a restarted `fit` ends with the same weights and History.

    When `fit` starts and `backup_dir` holds a backup, training continues from the saved position —
    mid-epoch included — with the weights and buffers, optimizer state, every callback's
    `state_dict()`, the History so far, the partial epoch's running sums and every RNG (torch CPU and
    CUDA, numpy, Python `random`) as they were. A backup is written at the end of every epoch, and
    with `save_freq=N` also every N training batches; a SIGTERM/SIGINT during `fit` writes one after
    the current batch. A backup whose loss or weights are not finite is never written.

    Each backup is a `torch.save` file of tensors and plain values (loaded with `weights_only=True`)
    plus a JSON manifest with its SHA-256, written last: a backup exists only once its manifest does.
    The two newest backups are kept, so if the newest is damaged the previous one is used (with a
    warning).

    A backup belongs to one run: it holds the run's fingerprint (module structure, optimizer and its
    settings, compile options, the data's hash, the `fit` arguments: `epochal.training.fingerprint`),
    and a resume whose fingerprint differs is refused with a `ValueError` naming what differs, before
    anything is loaded or written — or, with `on_mismatch="restart"`, starts afresh. What does not
    change the trajectory is forgiven: other callbacks, a larger `epochs` (`epochal.training.resume_check`).
    While `fit` runs, the folder is locked (an OS lock: a second process is refused at once; the
    lock of a process that died is taken over), and temporary files of writers that died are removed.

    Under torch.distributed (torchrun) the backup holds every rank's RNG states, partial sums and
    callback states; rank 0 writes it while the others wait, and every rank reads it back and takes
    its own part, so `backup_dir` must be storage that every machine sees. Under FSDP the weights and
    optimizer state are every rank's shards, written by each rank with torch.distributed.checkpoint
    into `backup-N.shards/` before the manifest commits the backup; they load on any number of ranks.
    Restart the whole job (the same torchrun command, or torchrun's `--max-restarts`) after a failure;
    with the same number of processes the resumed run is exact.

    Args:
        backup_dir: Folder for the backups; created when needed. A missing folder means a fresh start.
        save_freq: `"epoch"`, or an integer N to also back up every N training batches (counted across
            epochs). Defaults to `"epoch"`.
        delete_checkpoint: Remove the backups when `fit` finishes normally (not when it stops on a
            signal, an error or a non-finite loss). Defaults to `True`.
        on_mismatch: What a backup of another run (another fingerprint) does: `"raise"` refuses it
            with a `ValueError` naming the differences; `"restart"` warns, trains this run afresh and
            replaces the old backups as it writes its own. Defaults to `"raise"`.
        keep: How many of the newest backups to keep; `None` keeps every one, so that the run can be
            forked later from any of them (`fit(..., resume_from=...)`, `epochal fork`; pair it with
            `delete_checkpoint=False`). Defaults to `2`.

    Example:
        >>> import tempfile, torch, epochal
        >>> folder = tempfile.mkdtemp()
        >>> model = epochal.Model(torch.nn.Linear(3, 1), device="cpu")
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> backup = BackupAndRestore(folder, delete_checkpoint=False)
        >>> _ = model.fit(torch.ones(8, 3), torch.zeros(8, 1), epochs=2, verbose=0, callbacks=[backup])
        >>> sorted(os.listdir(folder))  # and the lock, which stays so that every process locks the same file
        ['.epochal.lock', 'backup-00000001.json', 'backup-00000001.pt', 'backup-00000002.json', 'backup-00000002.pt']
    """

    def __init__(self, backup_dir: str | os.PathLike[str], save_freq: str | int = "epoch",
                 delete_checkpoint: bool = True, on_mismatch: str = "raise", keep: int | None = _KEEP) -> None:
        super().__init__()
        if not isinstance(backup_dir, (str, os.PathLike)):
            raise TypeError(f"`backup_dir` must be a path. Received: backup_dir={backup_dir!r}")
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1):
            raise ValueError(f"`save_freq` must be 'epoch' or a positive integer. Received: save_freq={save_freq!r}")
        if not isinstance(delete_checkpoint, bool):
            raise TypeError(f"`delete_checkpoint` must be a bool. Received: delete_checkpoint={delete_checkpoint!r}")
        if on_mismatch not in ("raise", "restart"):
            raise ValueError(f"`on_mismatch` must be 'raise' or 'restart'. Received: on_mismatch={on_mismatch!r}")
        if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
            raise ValueError(f"`keep` must be a positive integer or None (keep all). Received: keep={keep!r}")
        self.backup_dir = os.fspath(backup_dir)
        self.keep = keep
        self.save_freq = save_freq
        self.delete_checkpoint = delete_checkpoint
        self.on_mismatch = on_mismatch
        self._batches_since_save = 0
        self._warned_non_finite = False
        self.sequence_read: int | None = None  # which backup `read()` returned

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self._batches_since_save = 0
        self._warned_non_finite = False

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Lock the folder for the life of a `fit` and remove dead writers' temporary files.

        The main process alone locks it under torch.distributed, as it alone writes there.
        """
        if not is_main_process():
            yield
            return
        lock = FolderLock(self.backup_dir, "backup folder")
        lock.acquire()
        try:
            remove_orphans(self.backup_dir)
            for sequence, kind in self._files():  # shards a killed run was writing (the lock says none is now)
                if kind == "shards.partial":
                    remove_shards_partial(self._stem(sequence) + ".shards")
            yield
        finally:
            lock.release(remove_empty_folder=True)

    # -- called by the training state at its safe points -------------------------------------------

    def batch_done(self, batches: int = 1) -> bool:
        """Count `batches` training batches; whether a backup is due now (`save_freq` batches since the last)."""
        if self.save_freq == "epoch":
            return False
        self._batches_since_save += batches
        return self._batches_since_save >= self.save_freq  # type: ignore[operator]

    def saved(self) -> None:
        """A backup was just committed (on every rank, whichever wrote it): count afresh from here."""
        self._batches_since_save = 0

    def next_sequence(self) -> int:
        """The number the next backup takes (asked of one process, which tells the others)."""
        return max(self._sequences(), default=0) + 1

    def write_shards(self, sequence: int, module: torch.nn.Module, optimizers: Mapping[str, torch.optim.Optimizer],
                     sync: Sync) -> None:
        """Every rank: write its shards of backup `sequence` (FSDP), before `write` commits it."""
        save_shards(self._stem(sequence) + ".shards", module, optimizers, {}, sync)

    def read_shards(self, module: torch.nn.Module, optimizers: Mapping[str, torch.optim.Optimizer]) -> None:
        """Every rank: load its part of the shards of the backup `read()` returned."""
        assert self.sequence_read is not None, "read() found the backup first"
        load_shards(self._stem(self.sequence_read) + ".shards", module, optimizers)

    def write(self, snapshot: Mapping[str, Any], position: Mapping[str, Any], sequence: int | None = None) -> None:
        """Commit `snapshot` as backup `sequence` (the next one by default), then delete all but the two newest
        (one process only)."""
        _check_plain(snapshot, "backup")
        buffer = io.BytesIO()
        torch.save(dict(snapshot), buffer)
        data = buffer.getvalue()
        os.makedirs(self.backup_dir, exist_ok=True)
        sequence = sequence if sequence is not None else self.next_sequence()
        stem = self._stem(sequence)
        with atomic_write(stem + ".pt") as handle:
            handle.write(data)
        manifest = {"format": "epochal.backup", "version": 1, "sequence": sequence,
                    "file": os.path.basename(stem + ".pt"), "size": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(), **dict(position)}
        with atomic_write(stem + ".json", text=True) as handle:  # the commit
            handle.write(json.dumps(manifest, indent=1))
        if self.keep is not None:
            self._prune(keep=self.keep)

    def read(self) -> dict[str, Any] | None:
        """The newest intact backup, falling back to older ones with a warning; None when there is none."""
        self.sequence_read = None
        committed = sorted(self._committed(), reverse=True)
        for sequence in committed:
            stem = self._stem(sequence)
            try:
                snapshot = self._load(stem)
                self.sequence_read = sequence
                return snapshot
            except PickledPayloadError:
                raise
            except (OSError, ValueError, KeyError, TypeError) as error:
                warnings.warn(f"Backup {stem}.pt is damaged ({error}); trying the previous one.", stacklevel=2)
        if committed:
            raise ValueError(
                f"No intact backup in {self.backup_dir!r}: every one is damaged (see the warnings). Delete the "
                "folder to start training afresh."
            )
        return None

    def backups(self) -> list[dict[str, Any]]:
        """The manifest of every committed backup, oldest first: its `sequence`, `file` and position
        (`epoch`, `batch`: `batch` batches of the 0-based `epoch` done; `finished`, `stopped`)."""
        manifests = []
        for sequence in sorted(self._committed()):
            path = os.path.join(self.backup_dir, f"backup-{sequence:08d}.json")
            try:
                with open(path, encoding="utf-8") as handle:
                    manifests.append(json.load(handle))
            except (OSError, ValueError) as error:
                raise ValueError(f"The backup manifest {path} cannot be read ({error}).") from None
        return manifests

    def read_backup(self, sequence: int) -> dict[str, Any]:
        """Backup `sequence`, checked against its manifest's checksum; a ValueError naming the file when it
        is missing or damaged. Reads only: the folder is neither locked nor changed."""
        stem = os.path.join(self.backup_dir, f"backup-{sequence:08d}")
        try:
            return self._load(stem)
        except PickledPayloadError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"The backup {stem}.pt cannot be used: {error}.") from None

    def skip_non_finite(self, epoch: int, batch: int) -> None:
        if not self._warned_non_finite:
            self._warned_non_finite = True
            warnings.warn(
                f"BackupAndRestore: the loss or weights are not finite (epoch {epoch + 1}, batch {batch}); no "
                "backup is written, the last finite one is kept.", stacklevel=2)

    def finish(self) -> None:
        """The run finished normally: remove its backups if `delete_checkpoint`."""
        if self.delete_checkpoint:
            self._prune(keep=0)
            with contextlib.suppress(OSError):
                os.rmdir(self.backup_dir)  # only if nothing else lives there

    # -- files --------------------------------------------------------------------------------------

    def _load(self, stem: str) -> dict[str, Any]:
        with open(stem + ".json", encoding="utf-8") as handle:
            manifest = json.load(handle)
        with open(stem + ".pt", "rb") as handle:
            data = handle.read()
        if len(data) != manifest["size"] or hashlib.sha256(data).hexdigest() != manifest["sha256"]:
            raise ValueError("its checksum does not match its manifest")
        snapshot = load_plain(io.BytesIO(data), name=stem + ".pt")
        if not isinstance(snapshot, dict) or snapshot.get("format") != "epochal.backup":
            raise ValueError("it is not an epochal backup")
        return snapshot

    def _files(self) -> list[tuple[int, str]]:
        if not os.path.isdir(self.backup_dir):
            return []
        found = (_NAME.match(name) for name in os.listdir(self.backup_dir))
        return [(int(m.group(1)), m.group(2)) for m in found if m]

    def _sequences(self) -> list[int]:
        return [sequence for sequence, _ in self._files()]

    def _committed(self) -> list[int]:
        return [sequence for sequence, kind in self._files() if kind == "json"]

    def _prune(self, keep: int) -> None:
        """Delete all but the `keep` newest committed backups, oldest first, and data files never committed."""
        committed = sorted(self._committed())
        kept = set(committed[len(committed) - keep:]) if keep else set()
        newest = max(committed, default=0)
        for sequence in committed:
            if sequence not in kept:
                self._remove(sequence)
        for sequence, kind in self._files():  # data files whose manifest never landed
            if kind != "json" and sequence not in kept and (sequence < newest or not keep):
                self._remove(sequence)

    def _remove(self, sequence: int) -> None:
        stem = self._stem(sequence)
        for suffix in (".json", ".pt"):  # the manifest first: a half-removed backup is never committed
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stem + suffix)
        remove_shards(stem + ".shards")

    def _stem(self, sequence: int) -> str:
        return os.path.join(self.backup_dir, f"backup-{sequence:08d}")
