"""Temporary files beside their target, named after the machine and process writing them, so that the
orphans of a writer that died mid-write (`kill -9`) are told apart from a live writer's and removed."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import socket

#: This machine, shortened: process ids only mean something on the machine that issued them.
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_TEMPORARY = re.compile(r"^\..+\.([0-9a-f]{8})-(\d+)-[0-9a-f]{8}\.tmp$")


def temporary_name(path: str | os.PathLike[str]) -> str:
    """A fresh hidden name beside `path`: `.<name>.<machine>-<pid>-<random>.tmp`.

    Example:
        >>> os.path.basename(temporary_name("/runs/ckpt.pt")).startswith(".ckpt.pt.")
        True
    """
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.{_HOST}-{os.getpid()}-{secrets.token_hex(4)}.tmp")


def remove_orphans(folder: str | os.PathLike[str]) -> list[str]:
    """Delete the temporary files in `folder` whose writer, on this machine, is no longer running.

    A live writer's file (or one from another machine, or one whose writer cannot be probed) is kept.
    Returns the paths removed.
    """
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for name in names:
        found = _TEMPORARY.match(name)
        if found is None or found.group(1) != _HOST or _running(int(found.group(2))):
            continue
        path = os.path.join(folder, name)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            removed.append(path)
    return removed


def _running(pid: int) -> bool:
    """Whether process `pid` exists; `True` when that cannot be told safely (not POSIX)."""
    if os.name != "posix" or pid == os.getpid():
        return True  # on Windows os.kill(pid, 0) would terminate the process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True
