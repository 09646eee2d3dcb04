"""`batch_size`: the largest batch that trains without running out of memory, then the measured trade-off
between speed and generalisation of the sizes up to it (what `epochal tune batch-size` prints)."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from epochal.callbacks.callback import Callback
from epochal.callbacks.early_stopping import EarlyStopping
from epochal.data.structure import float_dtype_of, num_samples, to_tensors
from epochal.monitoring import resolve_mode
from epochal.tune.largest_batch import StepProbe
from epochal.tune.model_state import Snapshot
from epochal.tune.step_memory import Steppable, default_budget


class Tunable(Steppable, Protocol):
    """What the search uses of a compiled `epochal.Model`."""

    def fit(self, x: Any = None, y: Any = None, batch_size: int | None = None, epochs: int = 1,
            verbose: int | str = "auto", callbacks: Any = None, validation_split: float = 0.0) -> Any: ...


@dataclass(frozen=True)
class BatchSizeTrial:
    """One batch size trained with early stopping: its speed, memory and best validation value."""

    batch_size: int
    samples_per_second: float
    step_bytes: int  # one training step's memory (see `StepMemory`)
    best_value: float | None  # of the monitor; None when it was never finite
    best_epoch: int | None  # 0-based
    seconds_to_best: float | None  # training time (validation excluded) up to the end of the best epoch


@dataclass(frozen=True)
class BatchSizeResult:
    """The largest batch that trains, each trial, and the recommended size (None: no trial was finite)."""

    largest: int
    monitor: str
    trials: list[BatchSizeTrial]
    recommended: int | None
    budget: int | None  # bytes; None when running out of memory decided alone


def batch_size(
    model: Tunable, x: Any, y: Any, *, sizes: Sequence[int] | None = None, epochs: int = 20, patience: int = 5,
    validation_split: float = 0.2, memory_budget: int | None = None, max_batch_size: int | None = None,
    monitor: str | None = None, tolerance: float = 0.01,
) -> BatchSizeResult:
    """Find the largest batch that trains, then train the candidate sizes and recommend one.

    The search trains one step at sizes 1, 2, 4, ... and bisects between the last that fitted and
    the first that did not. A size fits when, on CUDA, it does not run out of memory (the error is
    caught and the cache emptied) and, on CPU, the step's tensors on top of the process's resident
    memory stay within `memory_budget` (a size predicted from the sizes measured to exceed it is
    not run). Then each candidate trains from the same starting point with
    `EarlyStopping(patience)`: its training throughput, step memory, best `monitor` value and the
    training time it took to get there. The recommendation is the quickest to its best among the
    sizes whose best is within `tolerance` of the best of all. The model's weights, optimizer state
    and random generators are restored afterwards.

    Args:
        model: A compiled `epochal.Model`.
        x: Inputs (arrays or tensors, or a tuple/dict of them, as in `fit`).
        y: Targets, likewise.
        sizes: Candidate batch sizes; those above the largest that trains are left out. Defaults to
            `None`: powers of two from 8, and the largest size itself.
        epochs: Most epochs per candidate. Defaults to `20`.
        patience: EarlyStopping's patience on `val_loss`. Defaults to `5`.
        validation_split: Fraction of `x` validated on, as in `fit` (must be above 0). Defaults to `0.2`.
        memory_budget: Bytes a step may reach (on CPU, counting the process's resident memory).
            Defaults to `None`: on CPU the resident memory plus half of what is available, on CUDA no
            limit but the device's.
        max_batch_size: The largest size to try. Defaults to `None`: the number of training samples.
        monitor: The validation key judged. Defaults to `None`: the first `val_` metric, else `val_loss`.
        tolerance: How close to the best value (relatively) counts as as good. Defaults to `0.01`.
    """
    _check(epochs, patience, validation_split, memory_budget, max_batch_size, tolerance)
    snapshot = Snapshot(model)
    dtype = float_dtype_of(model.module)
    x, y = to_tensors(x, "x", dtype), to_tensors(y, "y", dtype)
    rows = math.floor(num_samples(x, "x") * (1 - validation_split))
    limit = min(rows, max_batch_size or rows)
    wanted = _sizes(sizes, limit)
    budget = memory_budget if memory_budget is not None else default_budget(model.device)
    probe = StepProbe(model, snapshot, x, y, budget)
    try:
        largest = probe.largest(limit)
        if not largest:
            raise RuntimeError(f"Not even a batch of 1 sample trains within the memory budget ({budget} bytes).")
        candidates = [size for size in wanted or _powers_of_two(largest) if size <= largest]
        if not candidates:
            raise ValueError(f"No size in `sizes` trains: the largest batch that fits in memory is {largest}. "
                             f"Received: sizes={list(sizes or [])}")
        trials, chosen = [], monitor
        for size in candidates:
            step_bytes = probe(size).bytes
            snapshot.restore()  # every candidate starts from the same weights, optimizer state and RNGs
            history, clock = _train(model, x, y, size, epochs, patience, validation_split)
            chosen = chosen or _default_monitor(history.history)
            trials.append(_measured(size, step_bytes, rows, history, clock, chosen))
    finally:
        snapshot.restore()
    return BatchSizeResult(largest, cast(str, chosen), trials, _recommend(trials, cast(str, chosen), tolerance),
                           budget)


class _TrainClock(Callback):
    """Training seconds per epoch, validation excluded (the clock stops when validation starts)."""

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self._start, self._stop = time.perf_counter(), cast("float | None", None)

    def on_test_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self._stop = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self.seconds.append((self._stop or time.perf_counter()) - self._start)


def _train(model: Tunable, x: Any, y: Any, size: int, epochs: int, patience: int,
           validation_split: float) -> tuple[Any, _TrainClock]:
    clock = _TrainClock()
    history = model.fit(x, y, batch_size=size, epochs=epochs, validation_split=validation_split, verbose=0,
                        callbacks=[EarlyStopping(patience=patience), clock])
    return history, clock


def _measured(size: int, step_bytes: int, rows: int, history: Any, clock: _TrainClock,
              monitor: str) -> BatchSizeTrial:
    diagnosis = history.diagnose(monitor)
    best = None if diagnosis.best_epoch is None else diagnosis.epochs.index(diagnosis.best_epoch)
    return BatchSizeTrial(
        batch_size=size, samples_per_second=rows * len(clock.seconds) / sum(clock.seconds), step_bytes=step_bytes,
        best_value=diagnosis.best_value, best_epoch=diagnosis.best_epoch,
        seconds_to_best=None if best is None else sum(clock.seconds[: best + 1]))


def _default_monitor(history: Mapping[str, Any]) -> str:
    """The first validation metric other than the loss, else `val_loss`."""
    return next((key for key in history if key.startswith("val_") and key != "val_loss"), "val_loss")


def _recommend(trials: list[BatchSizeTrial], monitor: str, tolerance: float) -> int | None:
    """The quickest to its best among the sizes whose best value is within `tolerance` of the best of all."""
    measured = [trial for trial in trials if trial.best_value is not None and trial.seconds_to_best is not None]
    if not measured:
        return None
    values = [cast(float, trial.best_value) for trial in measured]
    top = max(values) if resolve_mode("auto", monitor) == "max" else min(values)
    good = [trial for trial in measured if abs(cast(float, trial.best_value) - top) <= tolerance * abs(top)]
    return min(good, key=lambda trial: cast(float, trial.seconds_to_best)).batch_size


def _powers_of_two(largest: int) -> list[int]:
    """8, 16, 32, ... up to `largest`, and `largest` itself (or just it when it is below 8)."""
    sizes = [2 ** power for power in range(3, 63) if 2 ** power < largest]
    return sizes + [largest]


def _sizes(sizes: Sequence[int] | None, limit: int) -> list[int]:
    """The candidate sizes, sorted; sizes above the training samples (or `max_batch_size`) are left out."""
    if sizes is None:
        return []
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or not sizes:
        raise TypeError(f"`sizes` must be a non-empty list of positive integers. Received: sizes={sizes!r}")
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"`sizes` must hold positive integers. Received: {size!r} in sizes={list(sizes)!r}")
    kept = sorted({size for size in sizes if size <= limit})
    if not kept:
        raise ValueError(f"No size in `sizes` is at most the {limit} training samples (or `max_batch_size`). "
                         f"Received: sizes={list(sizes)!r}")
    return kept


def _check(epochs: Any, patience: Any, validation_split: Any, memory_budget: Any, max_batch_size: Any,
           tolerance: Any) -> None:
    for name, value, least in (("epochs", epochs, 1), ("patience", patience, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            kind = "positive" if least else "non-negative"
            raise ValueError(f"`{name}` must be a {kind} integer. Received: {name}={value!r}")
    for name, value in (("memory_budget", memory_budget), ("max_batch_size", max_batch_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"`{name}` must be a positive integer or None. Received: {name}={value!r}")
    if not isinstance(validation_split, (int, float)) or not 0 < validation_split < 1:
        raise ValueError("`validation_split` must be in (0, 1): the trials compare validation values. "
                         f"Received: validation_split={validation_split!r}")
    if not isinstance(tolerance, (int, float)) or not 0 <= tolerance < 1:
        raise ValueError(f"`tolerance` must be in [0, 1). Received: tolerance={tolerance!r}")
