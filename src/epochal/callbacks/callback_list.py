"""The dispatcher: calls each hook on the callbacks that override it, and nothing for the others."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from epochal.callbacks.callback import HOOKS, Callback, ModelView, overrides


class CallbackList:
    """Calls each hook on the callbacks that override it, in list order; others cost nothing."""

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        self.callbacks = list(callbacks)
        self._listeners = {hook: [cb for cb in self.callbacks if overrides(cb, hook)] for hook in HOOKS}

    def set_model(self, model: ModelView) -> None:
        for callback in self.callbacks:
            callback.set_model(model)

    def set_params(self, params: dict[str, Any]) -> None:
        for callback in self.callbacks:
            callback.set_params(params)

    def wants(self, *hooks: str) -> bool:
        """Whether any callback listens to any of `hooks` (so the loop can skip building their logs)."""
        return any(self._listeners[hook] for hook in hooks)

    def fire(self, hook: str, *args: Any) -> None:
        """Call `hook(*args)` on every listening callback."""
        for callback in self._listeners[hook]:
            getattr(callback, hook)(*args)
