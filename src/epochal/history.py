"""History: the per-epoch record of a `fit`, attached to every run as its last callback."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from epochal.callbacks.callback import Callback


class History(Callback):
    """Records every epoch's logs; `fit` returns it and also keeps it as `model.history`.

    `epoch` lists the epoch indices that completed, `history` maps each log key to its per-epoch
    values in first-seen order, and `params` holds the run's settings.

    Example:
        >>> h = History()
        >>> h.on_train_begin()
        >>> h.on_epoch_end(0, {"loss": 0.5})
        >>> h.history
        {'loss': [0.5]}
    """

    def __init__(self) -> None:
        super().__init__()
        self.epoch: list[int] = []
        self.history: dict[str, list[float]] = {}

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self.epoch = []
        self.history = {}

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self.epoch.append(epoch)
        # As Keras and TF.js: a key absent from an epoch's logs (validation_freq > 1) is not padded,
        # so its list is shorter than `epoch`.
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": list(self.epoch), "history": {k: list(v) for k, v in self.history.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epoch = list(state["epoch"])
        self.history = {k: list(v) for k, v in state["history"].items()}
