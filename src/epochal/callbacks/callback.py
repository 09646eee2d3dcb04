"""The Callback base class: Keras-named hooks, and which of them a callback overrides."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import torch


class ModelView(Protocol):
    """What a callback may use of the model it observes; `epochal.Model` is one.

    Callbacks see the model through this, never through the Model class, so they stay below it.
    """

    module: torch.nn.Module
    stop_training: bool
    device: torch.device

    @property
    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        """Every optimizer by name (one, named `"optimizer"`, unless `compile` was given several)."""

    @property
    def optimizer(self) -> torch.optim.Optimizer | None:
        """The optimizer, when there is exactly one (None before `compile`)."""

    def save_weights(self, path: str) -> None:
        """Write the whole weights to one file (every rank calls it under torch.distributed)."""

    def save(self, path: str, metadata: Mapping[str, Any] | None = None) -> None:
        """Write a resumable checkpoint (every rank calls it under torch.distributed)."""


def compile_config_of(model: ModelView | None) -> dict[str, Any]:
    """`model.get_compile_config()` (optimizer and its hyperparameters, loss, step options), so reports and
    trackers show how the run was compiled; `{}` for a stand-in model without that method (a test's)."""
    read = getattr(model, "get_compile_config", None)
    return dict(read()) if read is not None else {}


#: Every hook a callback may override, in Keras's names (and epochal's `on_validation_end`).
HOOKS = (
    "on_train_begin", "on_train_end",
    "on_epoch_begin", "on_epoch_end",
    "on_train_batch_begin", "on_train_batch_end",
    "on_test_begin", "on_test_end",
    "on_test_batch_begin", "on_test_batch_end",
    "on_predict_begin", "on_predict_end",
    "on_predict_batch_begin", "on_predict_batch_end",
    "on_validation_end",
)

# `on_batch_begin/end` are Keras's older names for the train-batch hooks: overriding either counts.
_ALIASES = {"on_train_batch_begin": "on_batch_begin", "on_train_batch_end": "on_batch_end"}


class Callback:
    """Base class for objects that observe training; override any hook named in Keras.

    Each hook receives logs it may read but must not change. `self.model` is the `epochal.Model`
    being trained and `self.params` the `History.params` of the run; both are set before
    `on_train_begin`. Callbacks with state reset it in `on_train_begin` and expose it through
    `state_dict()` / `load_state_dict()` so a run can be resumed exactly.
    """

    def __init__(self) -> None:
        self.model: ModelView | None = None
        self.params: dict[str, Any] = {}

    def set_model(self, model: ModelView) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def state_dict(self) -> dict[str, Any]:
        """State needed to resume this callback exactly; tensors and JSON-able values only."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict()` returned."""

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None: ...
    def on_train_end(self, logs: Mapping[str, float] | None = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None: ...

    def on_train_batch_begin(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        self.on_batch_end(batch, logs)

    def on_batch_begin(self, batch: int, logs: Mapping[str, float] | None = None) -> None: ...
    def on_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None: ...
    def on_test_begin(self, logs: Mapping[str, float] | None = None) -> None: ...
    def on_test_end(self, logs: Mapping[str, float] | None = None) -> None: ...
    def on_test_batch_begin(self, batch: int, logs: Mapping[str, float] | None = None) -> None: ...
    def on_test_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None: ...
    def on_predict_begin(self, logs: Mapping[str, float] | None = None) -> None: ...
    def on_predict_end(self, logs: Mapping[str, float] | None = None) -> None: ...
    def on_predict_batch_begin(self, batch: int, logs: Mapping[str, float] | None = None) -> None: ...
    def on_predict_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None: ...

    def on_validation_end(self, step: int, logs: Mapping[str, float] | None = None) -> None:
        """After each validation inside `fit` (at an epoch's end, or every `validation_every` batches): its
        `val_` logs (every validation set's) and `step`, the training batches done in the run so far."""


def overrides(callback: Callback, hook: str) -> bool:
    """Whether `callback`'s class (or instance) replaces the base no-op for `hook` or its alias."""
    names = (hook, _ALIASES[hook]) if hook in _ALIASES else (hook,)
    for name in names:
        if name in vars(callback):  # set on the instance, as LambdaCallback does
            return True
        if getattr(type(callback), name) is not getattr(Callback, name):
            return True
    return False
