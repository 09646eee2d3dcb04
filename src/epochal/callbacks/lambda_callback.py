"""LambdaCallback: plain functions as hooks, for one-off reactions without a class."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from epochal.callbacks.callback import HOOKS, Callback

_LEGACY = ("on_batch_begin", "on_batch_end")


class LambdaCallback(Callback):
    """Call the given functions at the hooks they are named for.

    Example:
        >>> seen = []
        >>> cb = LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(epoch))
        >>> cb.on_epoch_end(3, {}); seen
        [3]
    """

    def __init__(self, **hooks: Callable[..., Any]) -> None:
        super().__init__()
        for name, function in hooks.items():
            if name not in HOOKS and name not in _LEGACY:
                known = ", ".join(HOOKS + _LEGACY)
                raise TypeError(f"LambdaCallback got an unknown hook `{name}`. Known hooks: {known}.")
            if not callable(function):
                raise TypeError(f"`{name}` must be callable. Received: {name}={function!r}")
            setattr(self, name, function)
