"""Callback states in a backup, matched back to the callbacks of the resumed run.

A resumed run may have other callbacks than the run that wrote the backup (a logger added, one
removed, EarlyStopping given another patience): none of that changes the trajectory, so it is
forgiven. Each callback gets the saved state of the one that matches it — same class, and the same
`name` when it has one, else the same position among the callbacks of its class — and the rest is
said in one line: which callbacks start afresh, whose saved state is dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from epochal.callbacks.callback import Callback


def callback_states(callbacks: Sequence[Callback]) -> list[dict[str, Any]]:
    """Each callback's `state_dict()` with the key it is matched by on resume."""
    return [{"class": type(cb).__qualname__, "key": key, "state": cb.state_dict()}
            for cb, key in zip(callbacks, _keys(callbacks))]


def restore_callback_states(callbacks: Sequence[Callback], saved: Sequence[Mapping[str, Any]]) -> str | None:
    """Load each saved state into the callback with the same key; a one-line note on the rest, or None.

    A callback that cannot take its saved state (reconfigured beyond it) keeps its fresh state and
    is named in the note.
    """
    by_key = {entry["key"]: entry for entry in saved}
    fresh, refused = [], []
    for callback, key in zip(callbacks, _keys(callbacks)):
        entry = by_key.pop(key, None)
        if entry is None:
            fresh.append(key)
            continue
        try:
            callback.load_state_dict(entry["state"])
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            refused.append(f"{key} ({type(error).__name__}: {error})")
    parts = []
    if fresh:
        parts.append(f"new, starting afresh: {', '.join(fresh)}")
    if refused:
        parts.append(f"reconfigured beyond their saved state, starting afresh: {', '.join(refused)}")
    if by_key:
        parts.append(f"no longer given, their saved state unused: {', '.join(by_key)}")
    if not parts:
        return None
    return "Resuming with other callbacks than the backup's (the training itself is unchanged): " + "; ".join(parts) + "."


def _keys(callbacks: Sequence[Callback]) -> list[str]:
    """`Class` (first of its class), `Class#2`..., or `Class 'name'` for a callback with a string `name`."""
    keys, seen = [], {}  # type: ignore[var-annotated]
    for callback in callbacks:
        cls = type(callback).__qualname__
        name = getattr(callback, "name", None)
        if isinstance(name, str):
            keys.append(f"{cls} {name!r}")
            continue
        seen[cls] = seen.get(cls, 0) + 1
        keys.append(cls if seen[cls] == 1 else f"{cls}#{seen[cls]}")
    return keys
