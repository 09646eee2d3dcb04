"""EMA: an exponential moving average of the weights, validated on and kept at the end (Keras's `use_ema`)."""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Mapping
from typing import Any

from torch.optim.swa_utils import get_ema_multi_avg_fn

from epochal.callbacks.averaged_weights import AveragedWeights
from epochal.callbacks.callback import Callback


class EMA(Callback):
    """Average the weights exponentially as training goes, as Keras's optimizers do with `use_ema=True`.

    After every training batch `average = decay * average + (1 - decay) * weights` over the module's
    parameters (torch's `get_ema_multi_avg_fn`); the first batch sets the average to the weights.
    Buffers such as BatchNorm statistics are not averaged (Keras averages trainable variables only).

    - **Validation** inside `fit` (and `evaluate(..., callbacks=[ema])`) runs on the averaged
      weights when `validate_with_average` (Keras's `SwapEMAWeights`): they are swapped in by
      `on_test_begin` and the training weights swapped back, bit for bit, by `on_test_end`, so the
      `val_` logs, EarlyStopping and ModelCheckpoint's `monitor` judge the average.
    - **At the end of `fit`** the module's parameters are replaced by the average (Keras's
      `finalize_variable_values`), so `evaluate`, `predict`, `save_weights` and `export` use it.
    - `overwrite_frequency=N` also replaces the weights by the average every N batches (Keras's
      `ema_overwrite_frequency`).
    - The average is part of `state_dict()`, so `BackupAndRestore` resumes it exactly; under DDP
      every rank holds the same weights and so the same average.

    With `steps_per_execution > 1` the average takes one step per execution (the callback sees one
    batch event per execution), with a warning. `EarlyStopping(restore_best_weights=True)` keeps
    the module's own (training) weights of its best epoch, not the average: use it without
    `restore_best_weights` beside EMA.

    Args:
        decay: The weight of the old average, in [0, 1] (Keras's `ema_momentum`). Defaults to `0.99`.
        overwrite_frequency: Replace the weights by the average every this many batches; `None`
            never does during training. Defaults to `None`.
        validate_with_average: Validate on the averaged weights. Defaults to `True`.

    Example:
        >>> import torch, epochal
        >>> model = epochal.Model(torch.nn.Linear(3, 1), device="cpu")
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> ema = EMA(decay=0.9)
        >>> _ = model.fit(torch.ones(8, 3), torch.zeros(8, 1), epochs=2, batch_size=4, verbose=0, callbacks=[ema])
        >>> ema.updates
        4
    """

    def __init__(self, decay: float = 0.99, *, overwrite_frequency: int | None = None,
                 validate_with_average: bool = True) -> None:
        super().__init__()
        if isinstance(decay, bool) or not isinstance(decay, numbers.Real) or not 0.0 <= decay <= 1.0:
            raise ValueError(f"`decay` must be a number in [0, 1]. Received: decay={decay!r}")
        if overwrite_frequency is not None and (
                isinstance(overwrite_frequency, bool) or not isinstance(overwrite_frequency, int)
                or overwrite_frequency < 1):
            raise ValueError("`overwrite_frequency` must be a positive integer or None. "
                             f"Received: overwrite_frequency={overwrite_frequency!r}")
        if not isinstance(validate_with_average, bool):
            raise TypeError(f"`validate_with_average` must be a bool. Received: {validate_with_average!r}")
        self.decay: float = float(decay)
        self.overwrite_frequency: int | None = overwrite_frequency
        self.validate_with_average: bool = validate_with_average
        self.average: AveragedWeights | None = None

    @property
    def updates(self) -> int:
        """Batches averaged in since `fit` began (0 before)."""
        return 0 if self.average is None else self.average.updates

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self.average = self._new_average()
        if self.params.get("steps_per_execution", 1) > 1:
            warnings.warn("EMA averages once per execution of `steps_per_execution` batches, since it sees one "
                          "batch event per execution.", stacklevel=2)

    def on_train_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        average = self._average()
        average.update()
        if self.overwrite_frequency is not None and average.updates % self.overwrite_frequency == 0:
            average.copy_to_module()

    def on_test_begin(self, logs: Mapping[str, float] | None = None) -> None:
        if self.validate_with_average and self.updates:
            self._average().swap_in()

    def on_test_end(self, logs: Mapping[str, float] | None = None) -> None:
        if self.average is not None:
            self.average.swap_out()

    def on_train_end(self, logs: Mapping[str, float] | None = None) -> None:
        if self.updates:
            self._average().copy_to_module()

    def state_dict(self) -> dict[str, Any]:
        return {} if self.average is None else {"average": self.average.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "average" in state:
            self._average().load_state_dict(state["average"])

    def _average(self) -> AveragedWeights:
        if self.average is None:  # driven without `on_train_begin` (a test, or state loaded first)
            self.average = self._new_average()
        return self.average

    def _new_average(self) -> AveragedWeights:
        return AveragedWeights(self.model.module, get_ema_multi_avg_fn(self.decay))  # type: ignore[union-attr]
