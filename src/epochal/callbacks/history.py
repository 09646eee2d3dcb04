"""History: the per-epoch record of a `fit`, attached to every run as its last callback."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from epochal.analysis import history_io
from epochal._optional import require
from epochal.callbacks.callback import Callback, compile_config_of

if TYPE_CHECKING:
    import pandas
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from epochal.analysis.diagnosis import Diagnosis
    from epochal.analysis.interpretation import Interpretation


class History(Callback):
    """Records every epoch's logs; `fit` returns it and also keeps it as `model.history`.

    `epoch` lists the epoch indices that completed, `history` maps each log key to its per-epoch
    values in first-seen order, `params` holds the run's settings, `compile_config` how the model was
    compiled (`model.get_compile_config()`: optimizer and its hyperparameters, loss) and `epoch_seconds`
    each epoch's wall-clock time (training and validation), for reports. `events` lists what happened to
    the run itself, in order: where it was forked from (`fit(resume_from=...)`), each `Rollback`.

    Every validation of the run is also recorded by step, the x axis of a step-based run
    (`fit(validation_every=N)`): `validation_steps[i]` is the number of training batches done (the
    global step) when validation `i` ran — mid-epoch or at an epoch's end — and
    `validation_history[key][i]` its value. Mid-epoch validations appear only there: `history` stays
    one value per epoch, as in Keras.

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
        self._key_epochs: dict[str, list[int]] = {}
        self.compile_config: dict[str, Any] = {}
        self.epoch_seconds: list[float] = []
        self.events: list[dict[str, Any]] = []
        self._epoch_started: float | None = None
        self.validation_steps: list[int] = []
        self.validation_history: dict[str, list[float]] = {}

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self.epoch = []
        self.history = {}
        self._key_epochs = {}
        self.compile_config = compile_config_of(self.model)
        self.epoch_seconds = []
        self.validation_steps = []
        self.validation_history = {}
        self.events = []

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self._epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self.epoch.append(epoch)
        if self._epoch_started is not None:  # a History driven by hand may skip on_epoch_begin
            self.epoch_seconds.append(time.perf_counter() - self._epoch_started)
            self._epoch_started = None
        # As Keras and TF.js: a key absent from an epoch's logs (validation_freq > 1) is not padded,
        # so its list is shorter than `epoch`.
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
            self._key_epochs.setdefault(key, []).append(epoch)

    def on_validation_end(self, step: int, logs: Mapping[str, float] | None = None) -> None:
        self.validation_steps.append(step)
        for key, value in (logs or {}).items():
            self.validation_history.setdefault(key, []).append(float(value))

    def record_event(self, kind: str, epoch: int, batch: int, **details: Any) -> None:
        """Note that `kind` (`"fork"`, `"rollback"`...) happened at `batch` batches into `epoch` (0-based).

        `details` are plain values (numbers, strings, lists, dicts) kept with it in backups and files.
        """
        self.events.append({"kind": kind, "epoch": int(epoch), "batch": int(batch), **details})

    def epochs_of(self, key: str) -> list[int]:
        """The epoch of each value in `history[key]` (fewer than `epoch` when validation_freq > 1).

        Recorded during `fit` and kept by `to_csv`/`to_json`; for a History whose lists were set by
        hand, a shorter list is read as Keras's `validation_freq=k` pattern (epochs k-1, 2k-1, ...).
        """
        values = self.history[key]
        recorded = self._key_epochs.get(key)
        if recorded is not None and len(recorded) == len(values):
            return list(recorded)
        if len(values) == len(self.epoch) or not values:
            return list(self.epoch[: len(values)])
        every = max(len(self.epoch) // len(values), 1)
        return [self.epoch[min((i + 1) * every, len(self.epoch)) - 1] for i in range(len(values))]

    def to_dataframe(self) -> pandas.DataFrame:
        """A pandas DataFrame indexed by epoch, one column per key, NaN where a key was not logged."""
        pandas = require("pandas")
        columns = {k: pandas.Series(v, index=self.epochs_of(k), dtype=float) for k, v in self.history.items()}
        return pandas.DataFrame(columns, index=pandas.Index(self.epoch, name="epoch"))

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Write one row per epoch to `path` (atomically); `History.load` reads it back."""
        history_io.write_csv(self, path)

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write epochs, values, params, the compile config and the validations by step to `path` (atomically);
        `History.load` reads it back."""
        history_io.write_json(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> History:
        """A History read from a `.csv` or `.json` file written by `to_csv`/`to_json` (or a Keras dict dump)."""
        history, record = cls(), history_io.read(path)
        (history.epoch, history.history, history._key_epochs, history.params, history.compile_config,
         history.epoch_seconds, history.events) = record[:7]
        history.validation_steps, history.validation_history = record.validation_steps, record.validation_history
        return history

    def diagnose(self, monitor: str = "val_loss", **options: Any) -> Diagnosis:
        """Phases, best epoch, overfitting onset, gaps and advice; see `epochal.analysis.diagnosis.diagnose`."""
        from epochal.analysis.diagnosis import diagnose

        return diagnose(self, monitor, **options)

    def plot(self, keys: Sequence[str] | None = None, ax: Axes | Sequence[Axes] | None = None, *,
             monitor: str = "val_loss") -> Figure:
        """Learning curves: one panel per metric, train and `val_` together, best epoch and onset marked.

        Args:
            keys: Metrics to draw (`"loss"`, `"accuracy"`...; a `val_` name means its metric).
                Defaults to `None`: every metric in the history.
            ax: A matplotlib Axes for everything, or one Axes per metric. Defaults to `None`: a new figure.
            monitor: The key whose best epoch and overfitting onset are marked. Defaults to `"val_loss"`.

        Returns:
            The matplotlib Figure drawn on.
        """
        from epochal.analysis.plotting import plot_history

        return plot_history(self, keys, ax, monitor=monitor)

    def to_html(self, path: str | os.PathLike[str], interpretation: Interpretation | None = None, *,
                title: str = "Training report", monitor: str = "val_loss") -> None:
        """Write a self-contained HTML report (atomically): curves with hover values, diagnosis, hyperparameters
        (`params` and `compile_config`), timings.

        One file with everything inlined, no network request when viewed, readable on a phone; see
        `epochal.analysis.html_report`.

        Args:
            path: The `.html` file to write.
            interpretation: What `model.interpret(x, y)` returned, shown below the curves. Defaults to `None`.
            title: The page's heading. Defaults to `"Training report"`.
            monitor: The key whose best epoch and overfitting onset are marked. Defaults to `"val_loss"`.
        """
        from epochal.analysis.html_report import write_report

        diagnosis = self.diagnose(monitor) if self.epoch else None
        write_report(path, self, diagnosis=diagnosis, interpretation=interpretation, title=title)

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": list(self.epoch),
            "history": {k: list(v) for k, v in self.history.items()},
            "key_epochs": {k: list(v) for k, v in self._key_epochs.items()},
            "epoch_seconds": list(self.epoch_seconds),
            "validation_steps": list(self.validation_steps),
            "validation_history": {k: list(v) for k, v in self.validation_history.items()},
            "events": [dict(event) for event in self.events],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epoch = list(state["epoch"])
        self.history = {k: list(v) for k, v in state["history"].items()}
        self._key_epochs = {k: list(v) for k, v in state.get("key_epochs", {}).items()}
        self.epoch_seconds = [float(s) for s in state.get("epoch_seconds", [])]
        self.validation_steps = [int(s) for s in state.get("validation_steps", [])]
        self.validation_history = {k: list(v) for k, v in state.get("validation_history", {}).items()}
        self.events = [dict(event) for event in state.get("events", [])]

