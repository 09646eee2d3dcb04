"""Several runs on one self-contained HTML page: their figures, seed statistics and verdicts, and their learning
curves overlaid (inline SVG, the report's style), a fork's start marked on its curve."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from epochal.analysis.html_report import html_page
from epochal.analysis.interpretation_html import table
from epochal.analysis.plotting import fork_starts, metric_names
from epochal.analysis.svg_chart import PALETTE, Chart, number
from epochal.saving import atomic_write

if TYPE_CHECKING:
    from epochal.analysis.curves import Curves


def render_comparison(histories: Mapping[str, Curves], runs: Sequence[Mapping[str, Any]], *,
                      seeds: Sequence[Mapping[str, Any]] = (), verdicts: Sequence[str] = (),
                      title: str = "Comparison of runs") -> str:
    """The page: a row of figures per run, a row of means per configuration, the verdicts, then one chart per metric.

    Args:
        histories: Each run's curves, by the name its line is labelled with.
        runs: One mapping of figures per run (`epochal compare`'s table).
        seeds: One mapping per configuration: its seeds and each figure's mean ± interval. Defaults to none.
        verdicts: Sentences saying which configuration beats which beyond seed noise. Defaults to none.
        title: The page's heading. Defaults to `"Comparison of runs"`.
    """
    body = [f"<h1>{escape(title)}</h1>", "<h2>Runs</h2>" + _records(runs)]
    if seeds:
        body.append("<h2>Over seeds</h2><p class='note'>Mean ± half-width of the 95% confidence interval "
                    "(Student's t) over each configuration's seeds.</p>" + _records(seeds))
    if verdicts:
        body.append("<h2>Beyond seed noise?</h2>" + "".join(f"<p>{escape(v)}</p>" for v in verdicts))
    charts = overlay_svgs(histories)
    if charts:
        body.append("<h2>Learning curves</h2><p class='note'>Validation solid, training dashed; a vertical line in "
                    f"a run's colour marks where a fork starts.</p><div class='charts'>{''.join(charts)}</div>")
    return html_page(title, body)


def write_comparison(path: str | os.PathLike[str], histories: Mapping[str, Curves], runs: Sequence[Mapping[str, Any]],
                     **options: Any) -> None:
    """Write `render_comparison(...)` to `path`, atomically."""
    page = render_comparison(histories, runs, **options)
    with atomic_write(path, text=True) as handle:
        handle.write(page)


def overlay_svgs(histories: Mapping[str, Curves]) -> list[str]:
    """One `<svg>` per metric with every run's curves, epochs counted from 1."""
    if not histories:
        return []
    charts = []
    for metric in metric_names(next(iter(histories.values()))):
        chart = Chart(metric, x_label="epoch", integer_x=True)
        for index, (name, history) in enumerate(histories.items()):
            colour = PALETTE[index % len(PALETTE)]
            for key, label in (("val_" + metric, name), (metric, f"{name} (train)")):
                if key in history.history:
                    epochs = [e + 1 for e in history.epochs_of(key)]
                    chart.line(epochs, history.history[key], label=label, colour=colour, dashed=key == metric,
                               tips=[f"{name}, epoch {e}: {key} {number(v)}" for e, v in zip(epochs, history.history[key])])
            for start in fork_starts(history):
                chart.vline(start, colour=colour, label=f"{name} forked")
        charts.append(chart.render())
    return charts


def _records(rows: Sequence[Mapping[str, Any]]) -> str:
    header = list(dict.fromkeys(key for row in rows for key in row))
    return table(header, [[_cell(row.get(key)) for key in header] for row in rows])


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
