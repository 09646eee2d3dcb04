"""A checksum of what a file holds (tensors and plain values), independent of how it was serialised."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import torch


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


def _feed(hasher: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        hasher.update(f"tensor:{tensor.dtype}:{tuple(tensor.shape)}:".encode())
        if tensor.numel():  # bytes viewed in place: no copy of a CPU tensor
            hasher.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
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
