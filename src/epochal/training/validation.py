"""Validation inside `fit`: every validation set evaluated on the current weights, its logs named `val_<key>`
(one set) or `val_<name>_<key>` (named sets), then `on_validation_end(step, logs)` with all of them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from epochal.callbacks.callback_list import CallbackList
from epochal.data import Adapter, Batch, warn_empty_validation
from epochal.data.validation_sets import log_prefix, source_name
from epochal.logs import Logs

#: Loss and metrics over some batches (`loop.evaluate_pass` with the fit's module, steps and sync bound),
#: given the batches and how errors name their source.
Evaluate = Callable[[Iterator[Batch], str], Mapping[str, float]]


class Validation:
    """The validation sets of a fit and how to evaluate them; `run` gives one validation's `val_` logs.

    Under torch.distributed each set is evaluated by `evaluate`, which reduces its sums over every
    rank exactly, so every set's logs are exact means over all its samples.
    """

    def __init__(self, sets: Mapping[str | None, Adapter], evaluate: Evaluate, callbacks: CallbackList) -> None:
        self.sets = dict(sets)
        self.evaluate = evaluate
        self.callbacks = callbacks
        self._warned: set[str | None] = set()

    def run(self, epoch: int, step: int) -> dict[str, float]:
        """Evaluate every set (its batches for `epoch`); fire `on_validation_end(step, logs)` unless no set yielded
        a batch; return the logs."""
        logs: dict[str, float] = {}
        for name, adapter in self.sets.items():
            values = self.evaluate(adapter.epoch_batches(epoch), source_name(name))
            if not values and name not in self._warned:  # a one-shot iterator, already used up
                self._warned.add(name)
                warn_empty_validation(epoch, source_name(name))
            logs.update({log_prefix(name) + key: value for key, value in values.items()})
        if logs:
            self.callbacks.fire("on_validation_end", step, Logs.from_dict(logs))
        return logs
