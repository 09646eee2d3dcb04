"""`compile(checkpoint_modules=[...])`: activation (gradient) checkpointing of chosen submodules.

While a train step runs, each chosen submodule's forward goes through `torch.utils.checkpoint`
(non-reentrant, `preserve_rng_state=True`): it keeps only its inputs, and its backward runs the forward
again, with the random generators as they were, so dropout draws the same masks. Peak memory falls by
the activations inside those submodules; the results are the same as without (bit for bit, eager), at
the cost of one more forward of them per step.

The submodules are not wrapped or renamed: for the step's duration each gets an instance attribute
`forward` (the checkpointed call of its own forward), removed afterwards. So its parameter names,
`state_dict()`, hooks and every call path into it stay as they are, validation and predict run it
plainly, and `jit_compile` traces the same call (torch.compile turns it into a recomputed region). Under
`jit_compile`, torch cannot recompute random ops (dropout) inside a graph of forward and backward: such a
step falls back to eager, with a warning that says so.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

_SHOWN = 12  # submodule names an error lists, at most


class ActivationCheckpointing:
    """The chosen submodules of `module` (by name), checkpointed while `active()`."""

    def __init__(self, module: torch.nn.Module, names: Sequence[str]) -> None:
        self.submodules = [module.get_submodule(name) for name in names]
        self._forwards = [partial(checkpoint, sub.forward, use_reentrant=False, preserve_rng_state=True)
                          for sub in self.submodules]

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Each chosen submodule's forward checkpointed until the block ends (the same callables every time,
        so a compiled graph's guards hold)."""
        if not self.submodules:
            yield
            return
        own = [sub.__dict__.get("forward") for sub in self.submodules]  # a forward set on the instance (FSDP's
        for sub, forward in zip(self.submodules, self._forwards):     # compiled unit), put back afterwards
            sub.forward = forward  # type: ignore[method-assign]
        try:
            yield
        finally:
            for sub, previous in zip(self.submodules, own):
                if previous is None:
                    del sub.forward
                else:
                    sub.forward = previous


def checkpointed_names(module: torch.nn.Module, checkpoint_modules: Any) -> tuple[str, ...]:
    """`checkpoint_modules` — submodules, their names in `module.named_modules()`, or module classes (every
    submodule of the class) — as the chosen submodules' names, checked."""
    if checkpoint_modules is None:
        return ()
    if not isinstance(checkpoint_modules, (list, tuple)):
        raise TypeError("`checkpoint_modules` must be a list of submodules, their names or module classes. "
                        f"Received: checkpoint_modules={checkpoint_modules!r}")
    named = dict(module.named_modules())
    name_of = {id(sub): name for name, sub in named.items()}
    chosen: dict[str, None] = {}  # ordered, without repeats
    for entry in checkpoint_modules:
        chosen.update(dict.fromkeys(_names(entry, named, name_of)))
    if "" in chosen:
        raise ValueError("`checkpoint_modules` names the whole module, whose activations a checkpoint keeps for its "
                         "backward anyway: it saves no memory. Name its blocks (e.g. the layers of a stack).")
    for outer in chosen:
        inner = next((name for name in chosen if name.startswith(outer + ".")), None)
        if inner is not None:
            raise ValueError(f"`checkpoint_modules` chooses `{inner}` inside `{outer}`, which is checkpointed "
                             "whole already: choose one of them.")
    return tuple(chosen)


def _names(entry: Any, named: dict[str, torch.nn.Module], name_of: dict[int, str]) -> list[str]:
    """The submodule names one entry of `checkpoint_modules` chooses."""
    if isinstance(entry, str):
        if entry not in named:
            known = [name for name in named if name]
            listed = ", ".join(known[:_SHOWN]) + (", ..." if len(known) > _SHOWN else "")
            raise ValueError(f"`checkpoint_modules` names {entry!r}, which is not a submodule. Its submodules are: "
                             f"{listed}.")
        return [entry]
    if isinstance(entry, torch.nn.Module):
        if id(entry) not in name_of:
            raise ValueError(f"`checkpoint_modules` holds a {type(entry).__name__} that is not part of the model's "
                             "module: pass its own submodules.")
        return [name_of[id(entry)]]
    if isinstance(entry, type) and issubclass(entry, torch.nn.Module):
        found = [name for name, sub in named.items() if isinstance(sub, entry)]
        if not found:
            raise ValueError(f"`checkpoint_modules` holds the class {entry.__name__}, but the module has no "
                             "submodule of that class.")
        return found
    raise TypeError("Each entry of `checkpoint_modules` must be a submodule, its name or a module class. "
                    f"Received: {entry!r}")
