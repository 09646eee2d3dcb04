"""An OS lock on a folder, so two processes never write into it at once (e.g. one backup folder)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import filelock

LOCK_NAME = ".epochal.lock"
OWNER_NAME = ".epochal.lock.json"


class FolderInUseError(RuntimeError):
    """Another running process holds the folder's lock."""


class FolderLock:
    """An exclusive lock on `folder`, held by one process (one `acquire`) at a time.

    It is an OS lock (`flock`, through the `filelock` package): the OS drops it when its process
    dies, however it dies, so a stale lock of a dead process is taken over by the next one without
    any clean-up. A second process is refused at once, with who holds the lock (pid, machine, since
    when, from `.epochal.lock.json`), and touches nothing of the first.

    Args:
        folder: The folder to lock; created when needed.
        purpose: What the folder is, for the error message. Defaults to `"folder"`.

    Example:
        >>> import tempfile
        >>> lock = FolderLock(tempfile.mkdtemp())
        >>> lock.acquire(); lock.release()
    """

    def __init__(self, folder: str | os.PathLike[str], purpose: str = "folder") -> None:
        self.folder = os.fspath(folder)
        self.purpose = purpose
        self._lock: filelock.BaseFileLock | None = None

    def acquire(self) -> None:
        """Take the lock now, or raise `FolderInUseError` naming its holder."""
        import filelock  # here: only a run with backups takes a lock

        os.makedirs(self.folder, exist_ok=True)
        lock = filelock.FileLock(os.path.join(self.folder, LOCK_NAME), timeout=0)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise FolderInUseError(
                f"The {self.purpose} {self.folder!r} is in use by another process ({self._holder()}). Two runs "
                "must not share it: wait for that one to finish or stop it, or give this run another folder."
            ) from None
        self._lock = lock
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        path = os.path.join(self.folder, OWNER_NAME)
        with open(path + ".new", "w", encoding="utf-8") as handle:  # this process alone writes here now
            json.dump(owner, handle)
        os.replace(path + ".new", path)

    def release(self, remove_empty_folder: bool = False) -> None:
        """Give the lock back; with `remove_empty_folder`, remove the folder if nothing else is left in it."""
        if self._lock is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.folder, OWNER_NAME))
        if remove_empty_folder and set(os.listdir(self.folder)) <= {LOCK_NAME}:
            # Unlinked while still held, so no other process can be holding this file's lock.
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.folder, LOCK_NAME))
            with contextlib.suppress(OSError):
                os.rmdir(self.folder)
        self._lock.release()
        self._lock = None

    def _holder(self) -> str:
        try:
            with open(os.path.join(self.folder, OWNER_NAME), encoding="utf-8") as handle:
                owner: dict[str, Any] = json.load(handle)
            return f"pid {owner['pid']} on {owner['host']}, since {owner['since']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "its owner is not recorded yet"
