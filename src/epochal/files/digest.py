"""A checksum of what a file holds (tensors and plain values), independent of how it was serialised; and,
for files another library writes, of their bytes."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

import torch

_CHUNK = 1 << 26  # bytes copied from an accelerator, or read from a file, at a time

def digest(value: Any) -> str:
    """The SHA-256 (hex) of a tree of tensors, str, int, float, bool and None in lists and dicts.

    Computed from the values, not the file's bytes, so it is written inside the file it checks and
    verified after loading: a flipped byte that still loads changes a value and so the digest.
    Dict entries are taken in key order, so the digest does not depend on insertion order.

    Example:
        >>> digest({"b": 1, "a": [torch.zeros(2), None]}) == digest({"a": [torch.zeros(2), None], "b": 1})
        True
    """
    hasher = hashlib.sha256()
    _feed(hasher, value)
    return hasher.hexdigest()


#: The key under which `sealed` stores a record's checksum.
SEAL = "sha256"


def sealed(record: Mapping[str, Any]) -> dict[str, Any]:
    """`record` (plain values, e.g. a JSON index) with the checksum of its other entries added under `SEAL`."""
    return {**record, SEAL: digest(record)}


def seal_intact(record: Mapping[str, Any]) -> bool:
    """Whether `record`, as `sealed` made it, still matches its checksum (False when it has none)."""
    return record.get(SEAL) == digest({key: value for key, value in record.items() if key != SEAL})


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 (hex) of a file's bytes, read a chunk at a time: the checksum of a file another library wrote."""
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def _feed(hasher: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        hasher.update(f"tensor:{value.dtype}:{tuple(value.shape)}:".encode())
        raw = value.detach().reshape(-1).contiguous().view(torch.uint8) if value.numel() else None
        if raw is not None and raw.device.type == "cpu":  # read in place: no copy
            hasher.update(raw.numpy().data)
        elif raw is not None:  # from an accelerator, a chunk at a time: never a whole copy in host memory
            for start in range(0, raw.numel(), _CHUNK):
                hasher.update(raw[start:start + _CHUNK].cpu().numpy().data)
    elif isinstance(value, Mapping):
        hasher.update(b"{")
        for key in sorted(value, key=lambda k: (type(k).__name__, repr(k))):
            _feed(hasher, key)
            _feed(hasher, value[key])
        hasher.update(b"}")
    elif isinstance(value, (list, tuple)):
        hasher.update(b"[")
        for item in value:
            _feed(hasher, item)
        hasher.update(b"]")
    elif value is None or isinstance(value, (str, int, float, bool)):
        hasher.update(f"{type(value).__name__}:{value!r};".encode())
    else:
        raise TypeError(f"Cannot checksum a {type(value).__name__}: only tensors and plain values. Received: {value!r}")
