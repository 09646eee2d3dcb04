"""The callbacks a replay runs with: each batch's weights as digests, and what one batch saw and did."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from epochal.callbacks.callback import Callback
from epochal.files.digest import digest
from epochal.training.rng import capture_rng

Digests = dict[str, str]


def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of `module.state_dict()` (parameters and buffers)."""
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def digests(module: torch.nn.Module) -> Digests:
    """Each `state_dict()` entry's SHA-256: equal digests, bit-identical weights."""
    return {name: digest(tensor) for name, tensor in module.state_dict().items()}


class Recorder(Callback):
    """Records the weights' digests before the first batch and after every batch, in order, with where."""

    def __init__(self) -> None:
        super().__init__()
        self.start: Digests | None = None
        self.trace: list[tuple[int, int, Digests]] = []  # (epoch, batch index, digests after it)
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_begin(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        if self.start is None:  # after any resume: what this replay starts from
            self.start = digests(self.model.module)  # type: ignore[union-attr]

    def on_train_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        self.trace.append((self._epoch, batch, digests(self.model.module)))  # type: ignore[union-attr]


class Catch(Callback):
    """Stops a replay at its `index`-th batch (0-based, counted over the replay; -1: before the first) or, given
    the other run's `trace`, at the first batch whose weights differ from it; keeps what that batch saw.

    Kept: the weights before and after it, the batch's inputs (the module's first training forward in it)
    and the random generators as the batch began, so its forward can be run again.
    """

    def __init__(self, *, index: int | None = None, trace: list[tuple[int, int, Digests]] | None = None,
                 start: Digests | None = None) -> None:
        super().__init__()
        self.index, self.trace, self.start = index, trace, start
        self.count = 0
        self.caught: int | None = None  # the index caught, -1 for the start
        self.where: tuple[int, int] | None = None
        self.before: dict[str, torch.Tensor] = {}
        self.after: dict[str, torch.Tensor] = {}
        self.inputs: Any = None
        self.rng: dict[str, Any] | None = None
        self.module: torch.nn.Module | None = None
        self._epoch = 0
        self._hook: Any = None

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self.module = self.model.module  # type: ignore[union-attr]
        self._hook = self.module.register_forward_pre_hook(self._saw, with_kwargs=True)

    def on_train_end(self, logs: Mapping[str, float] | None = None) -> None:
        if self._hook is not None:
            self._hook.remove()

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_begin(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        if self.caught is not None:
            return
        module = self.module
        assert module is not None
        if self.count == 0 and (self.index == -1 or (self.start is not None and digests(module) != self.start)):
            self._catch(-1, batch, weights(module), weights(module))
            return
        self.before, self.rng, self.inputs = weights(module), capture_rng(), None

    def on_train_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        if self.caught is not None:
            return
        module = self.module
        assert module is not None
        index, self.count = self.count, self.count + 1
        differs = self.trace is not None and (index >= len(self.trace) or digests(module) != self.trace[index][2])
        if index == self.index or differs:
            self._catch(index, batch, self.before, weights(module))

    def _saw(self, module: torch.nn.Module, args: Any, kwargs: Any) -> None:
        if module.training and self.inputs is None and self.caught is None:
            self.inputs = (args, kwargs)

    def _catch(self, index: int, batch: int, before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> None:
        self.caught, self.where, self.before, self.after = index, (self._epoch, batch), before, after
        self.model.stop_training = True  # type: ignore[union-attr]
