"""epochal trained as a user writes it: `Model`, `compile`, `fit`, timed by an epoch-only callback."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn
from clock import EpochSpan, now
from workloads import Data, Unsupported

import epochal



class EpochTimer(epochal.callbacks.Callback):
    """Records each epoch's wall-clock (begin, end); it overrides no batch hook, so it costs nothing per batch."""

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self.spans: list[EpochSpan] = []

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self._begin = now()

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self.spans.append((self._begin, now()))


def train(
    module: nn.Module, data: Data, *, batch_size: int, epochs: int, jit_compile: bool, optimizer: str = "adam",
    cuda_graphs: bool = False, device: str = "cpu",
) -> tuple[list[EpochSpan], dict[str, float]]:
    """Train `module` on `device` through `epochal.Model.fit`, with validation after each epoch; a
    streamed workload passes its DataLoaders to `fit` as they are.

    Returns the wall-clock (begin, end) of every epoch and the last epoch's logs.
    Raises `Unsupported` when `compile` does not accept the options the variant needs.
    """
    model = epochal.Model(module, device=device)
    loss = epochal.losses.SparseCategoricalCrossentropy(from_logits=True)
    # Compiled: the whole step in one graph, 8 steps per call (Keras's steps_per_execution).
    options: dict[str, Any] = {"jit_compile": True, "steps_per_execution": 8} if jit_compile else {}
    if cuda_graphs:
        options["cuda_graphs"] = True
    try:
        model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"], **options)
    except TypeError as error:
        if not any(name in str(error) for name in options):
            raise
        raise Unsupported(str(error)) from error
    timer = EpochTimer()
    if data.loaders is not None:
        history = model.fit(data.loaders.train, epochs=epochs, validation_data=data.loaders.validation, verbose=0,
                            callbacks=[timer])
    else:
        history = model.fit(data.x, data.y, epochs=epochs, batch_size=batch_size,
                            validation_data=(data.x_val, data.y_val), verbose=0, callbacks=[timer])
    return timer.spans, {key: values[-1] for key, values in history.history.items()}
