"""Learning curves as inline SVG (for the HTML report and live notebook plots): train and validation per
metric, the gap between them shaded, the best epoch and the overfitting onset marked, values on hover."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from epochal.analysis.plotting import metric_names
from epochal.analysis.svg_chart import PALETTE, Chart, number

if TYPE_CHECKING:
    from epochal.analysis.curves import Curves
    from epochal.analysis.diagnosis import Diagnosis


def learning_curve_svgs(history: Curves, diagnosis: Diagnosis | None = None,
                        keys: Sequence[str] | None = None) -> list[str]:
    """One `<svg>` per metric; epochs counted from 1 as the progress output and the diagnosis text do.

    Args:
        history: The curves to draw.
        diagnosis: Its diagnosis, whose best epoch and overfitting onset are marked. Defaults to `None`.
        keys: Metrics to draw (a `val_` name means its metric). Defaults to `None`: all.
    """
    if not history.epoch:
        return []
    epochs = (min(history.epoch) + 0.5, max(history.epoch) + 1.5)
    return [_metric_chart(history, metric, diagnosis, epochs) for metric in metric_names(history, keys)]


def _metric_chart(history: Curves, metric: str, diagnosis: Diagnosis | None, x_range: tuple[float, float]) -> str:
    chart = Chart(metric, x_label="epoch", integer_x=True, x_range=x_range)
    series = {key: dict(zip(history.epochs_of(key), history.history[key]))
              for key in (metric, "val_" + metric) if key in history.history}
    both = [e for e in history.epoch if all(e in values for values in series.values())] if len(series) == 2 else []
    if both:
        train, val = series[metric], series["val_" + metric]
        chart.band([e + 1 for e in both], [train[e] for e in both], [val[e] for e in both],
                   label="train/validation gap")
    if diagnosis is not None:
        if diagnosis.onset_epoch is not None:
            onset = diagnosis.onset_epoch + 1
            chart.span(onset - 0.5, x_range[1], label=f"overfitting from epoch {onset}")
            chart.vline(onset - 0.5, colour="#d62728", label="")
        if diagnosis.best_epoch is not None:
            chart.vline(diagnosis.best_epoch + 1, label=f"best epoch {diagnosis.best_epoch + 1}")
    for colour, (key, values) in zip(PALETTE, series.items()):
        label = "validation" if key.startswith("val_") else "train"
        chart.line([e + 1 for e in values], list(values.values()), label=label, colour=colour,
                   tips=[f"epoch {e + 1}: {key} {number(v)}" for e, v in values.items()])
    chart.columns([e + 1 for e in history.epoch], [_column_tip(metric, e, series) for e in history.epoch])
    return chart.render()


def _column_tip(metric: str, epoch: int, series: dict[str, dict[int, float]]) -> str:
    """`epoch 3 · loss 0.2 · val_loss 0.25 · gap 0.05`: every value of `metric` at `epoch`."""
    values = {key: values[epoch] for key, values in series.items() if epoch in values}
    text = " · ".join([f"epoch {epoch + 1}"] + [f"{key} {number(value)}" for key, value in values.items()])
    if len(values) == 2:
        text += f" · gap {number(values['val_' + metric] - values[metric])}"
    return text
