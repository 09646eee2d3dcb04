"""Learning-curve figures with matplotlib (an optional extra), drawn without pyplot's global state."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from epochal._optional import require

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from epochal.analysis.curves import Curves
    from epochal.analysis.diagnosis import Diagnosis


def metric_names(history: Curves, keys: Sequence[str] | None = None) -> list[str]:
    """The metrics to draw, as base names (`"val_loss"` means `"loss"`), in first-seen order."""
    available = list(dict.fromkeys(key.removeprefix("val_") for key in history.history))
    if keys is None:
        return available
    wanted = list(dict.fromkeys(key.removeprefix("val_") for key in keys))
    unknown = [key for key in wanted if key not in available]
    if unknown:
        raise ValueError(f"Unknown keys {unknown}: the history has {', '.join(available)}.")
    return wanted


def plot_history(history: Curves, keys: Sequence[str] | None = None, ax: Axes | Sequence[Axes] | None = None,
                 *, monitor: str = "val_loss") -> Figure:
    """Draw `history` (see `History.plot`), one panel per metric, best epoch and overfitting onset marked."""
    metrics = metric_names(history, keys)
    axes = _axes(ax, len(metrics))
    for axis, metric in zip(axes, metrics):
        for key, label in ((metric, "train"), ("val_" + metric, "validation")):
            if key in history.history:
                epochs = [e + 1 for e in history.epochs_of(key)]
                axis.plot(epochs, history.history[key], marker=".", label=f"{label} {metric}")
        _epoch_axis(axis)
        axis.set_title(metric)
    monitor = monitor if monitor in history.history else monitor.removeprefix("val_")
    if monitor in history.history and history.epoch:
        from epochal.analysis.diagnosis import diagnose

        _mark(axes, diagnose(history, monitor))
    for axis in dict.fromkeys(axes):  # a single `ax` given for every metric is one legend
        axis.legend(fontsize="small")
    return _figure(axes[0])


def plot_histories(histories: Mapping[str, Curves], keys: Sequence[str] | None = None) -> Figure:
    """Overlay several runs: one panel per metric, one colour per run, validation solid, train dashed; a
    dotted line in a run's colour where it was forked from another (`History.events`)."""
    metrics = metric_names(next(iter(histories.values())), keys)
    axes = _axes(None, len(metrics))
    for axis, metric in zip(axes, metrics):
        for index, (name, history) in enumerate(histories.items()):
            colour = f"C{index % 10}"
            for key, style, label in (("val_" + metric, "-", name), (metric, "--", f"{name} (train)")):
                if key in history.history:
                    epochs = [e + 1 for e in history.epochs_of(key)]
                    axis.plot(epochs, history.history[key], style, color=colour, label=label)
            for start in fork_starts(history):
                axis.axvline(start, color=colour, linestyle=":", label=f"{name} forked")
        _epoch_axis(axis)
        axis.set_title(metric)
        axis.legend(fontsize="small")
    return _figure(axes[0])


def fork_starts(history: Curves) -> list[float]:
    """Where each fork in `history.events` starts on the 1-based epoch axis: between the last epoch it shares
    with its parent and its first own one."""
    return [event["epoch"] + 0.5 for event in getattr(history, "events", []) if event["kind"] == "fork"]


def new_axes(panels: int, *, width: float = 4.5, height: float = 3.4) -> list[Axes]:
    """`panels` side-by-side Axes on a new Figure that belongs to no pyplot state."""
    figure_module: Any = require("matplotlib.figure")
    figure = figure_module.Figure(figsize=(width * panels, height), layout="constrained")
    return list(figure.subplots(1, panels, squeeze=False)[0])


def _epoch_axis(axis: Axes) -> None:
    """Label the x axis `epoch`, with whole-number ticks only."""
    ticker: Any = require("matplotlib.ticker")
    axis.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    axis.set_xlabel("epoch")


def _figure(axis: Axes) -> Figure:
    return cast("Figure", axis.figure)  # a SubFigure only when the caller drew on one


def _axes(ax: Axes | Sequence[Axes] | None, panels: int) -> list[Axes]:
    if ax is None:
        return new_axes(max(panels, 1))
    if isinstance(ax, Sequence):
        if len(ax) != panels:
            raise ValueError(f"`ax` must hold one Axes per metric ({panels}). Received: {len(ax)} Axes.")
        return list(ax)
    return [ax] * panels


def _mark(axes: list[Axes], diagnosis: Diagnosis) -> None:
    """Best epoch as a dashed line; overfitting onset as a dotted line with the rest shaded."""
    for axis in dict.fromkeys(axes):
        if diagnosis.best_epoch is not None:
            axis.axvline(diagnosis.best_epoch + 1, color="tab:green", linestyle="--", linewidth=1,
                         label=f"best epoch {diagnosis.best_epoch + 1}")
        if diagnosis.onset_epoch is not None:
            onset = diagnosis.onset_epoch + 1
            axis.axvline(onset, color="tab:red", linestyle=":", linewidth=1, label=f"overfitting from {onset}")
            axis.axvspan(onset, diagnosis.epochs[-1] + 1, color="tab:red", alpha=0.06)


def plot_lr_sweep(lrs: Sequence[float], losses: Sequence[float], smoothed: Sequence[float],
                  suggestion: float | None, ax: Axes | None = None) -> Figure:
    """Batch loss (faint) and smoothed loss against the learning rate on a log axis, the suggestion marked."""
    [axis] = _axes(ax, 1)
    axis.plot(lrs, losses, color="tab:blue", alpha=0.3, label="batch loss")
    axis.plot(lrs, smoothed, color="tab:blue", label="smoothed loss")
    if suggestion is not None:
        axis.axvline(suggestion, color="tab:green", linestyle="--", label=f"suggested lr {suggestion:.2g}")
    axis.set_xscale("log")
    axis.set_xlabel("learning rate")
    axis.set_ylabel("loss")
    axis.legend(fontsize="small")
    return _figure(axis)


def plot_batch_sizes(sizes: Sequence[int], throughput: Sequence[float], metric: Sequence[float | None],
                     metric_name: str, recommended: int | None) -> Figure:
    """Samples per second and the best validation metric against batch size (log 2 axis)."""
    speed_axis, metric_axis = new_axes(2)
    speed_axis.plot(sizes, throughput, marker="o")
    speed_axis.set_ylabel("training samples / s")
    metric_axis.plot(sizes, [math.nan if m is None else m for m in metric], marker="o", color="tab:orange")
    metric_axis.set_ylabel(f"best {metric_name}")
    for axis in (speed_axis, metric_axis):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("batch size")
        if recommended is not None:
            axis.axvline(recommended, color="tab:green", linestyle="--", label=f"recommended {recommended}")
            axis.legend(fontsize="small")
    return _figure(speed_axis)
