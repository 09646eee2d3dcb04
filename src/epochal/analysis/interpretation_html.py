"""An `Interpretation` as HTML for the run report: tables, a shaded confusion matrix, and inline-SVG
reliability and residual plots."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from epochal.analysis.interpretation import Interpretation
from epochal.analysis.svg_chart import Chart, number


def interpretation_html(result: Interpretation) -> str:
    """The sections of the report that show `result`."""
    parts = [f"<h2>Interpretation</h2><p>{result.samples} samples, {escape(result.task)}"
             + (f", accuracy {result.accuracy:.4f}" if result.accuracy is not None else "") + ".</p>"]
    if result.per_class is not None:
        parts.append("<h3>Per class</h3>" + table(
            ["class", "precision", "recall", "F1", "support"],
            [[row.name, f"{row.precision:.4f}", f"{row.recall:.4f}", f"{row.f1:.4f}", str(row.support)]
             for row in result.per_class]))
    if result.confusion_matrix is not None:
        parts.append("<h3>Confusion matrix</h3><p class=note>Rows: true class; columns: predicted.</p>"
                     + _confusion(result.confusion_matrix, result.class_names or []))
    if result.calibration is not None:
        parts.append(f"<h3>Calibration</h3><p>Expected calibration error: {result.ece:.4f} (0: the model's "
                     "confidence matches how often it is right).</p>" + _reliability(result))
    if result.residuals is not None:
        r = result.residuals
        parts.append("<h3>Residuals</h3>" + table(
            ["count", "mean", "std", "MAE", "RMSE", "R²", "max |residual|"],
            [[str(r.count), *(number(v) for v in (r.mean, r.std, r.mae, r.rmse, r.r2, r.max_abs))]])
            + table(list(r.quantiles), [[number(v) for v in r.quantiles.values()]]) + _residual_plot(result))
    if result.top_losses:
        confidence = any(t.confidence is not None for t in result.top_losses)
        parts.append(f"<h3>Highest {escape(result.loss_name)}</h3>" + table(
            ["sample", "loss", "predicted", "true"] + (["confidence"] if confidence else []),
            [[str(t.index), number(t.loss), t.predicted, t.true]
             + ([f"{t.confidence:.0%}"] if t.confidence is not None else []) for t in result.top_losses]))
    return "".join(parts)


def table(header: Sequence[str], rows: Sequence[Sequence[str]], css_class: str = "") -> str:
    """A plain HTML table in a horizontally scrolling box (so a wide one never widens the page)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return (f'<div class="scroll"><table class="{css_class}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def _confusion(matrix: list[list[int]], names: list[str]) -> str:
    top = max((max(row) for row in matrix), default=0) or 1
    head = "<th></th>" + "".join(f"<th>{escape(n)}</th>" for n in names)
    rows = []
    for name, row in zip(names, matrix):
        cells = "".join(f'<td class="cm" style="background:rgba(31,119,180,{value / top:.2f});'
                        f'color:{"#fff" if value > top / 2 else "#000"}" title="true {escape(name)}, predicted '
                        f'{escape(names[j])}: {value}">{value}</td>' for j, value in enumerate(row))
        rows.append(f"<tr><th>{escape(name)}</th>{cells}</tr>")
    return f'<div class="scroll"><table class="confusion"><tr>{head}</tr>{"".join(rows)}</table></div>'


def _reliability(result: Interpretation) -> str:
    chart = Chart("reliability diagram", x_label="confidence", y_label="accuracy", x_range=(0, 1), y_range=(0, 1))
    bins = [b for b in result.calibration or [] if b.count]
    chart.bars([b.low for b in bins], [b.accuracy for b in bins], bins[0].high - bins[0].low if bins else 0.1,
               label="accuracy per bin",
               tips=[f"confidence {b.low:.1f}-{b.high:.1f}: {b.count} samples, mean confidence {b.confidence:.3f}, "
                     f"accuracy {b.accuracy:.3f}" for b in bins])
    chart.line([0, 1], [0, 1], label="perfect calibration", colour="#7f7f7f", dashed=True, points=False)
    chart.line([b.confidence for b in bins], [b.accuracy for b in bins], label="mean confidence",
               tips=[f"mean confidence {b.confidence:.3f}, accuracy {b.accuracy:.3f} ({b.count} samples)"
                     for b in bins])
    return chart.render()


def _residual_plot(result: Interpretation) -> str:
    points = [(p, r) for p, r in result.residual_points or [] if math.isfinite(p + r)]
    chart = Chart("residuals against predictions", x_label="prediction", y_label="residual")
    chart.scatter([p for p, _ in points], [r for _, r in points], label="samples",
                  tips=[f"prediction {number(p)}, residual {number(r)}" for p, r in points])
    if points:
        low, high = min(p for p, _ in points), max(p for p, _ in points)
        chart.line([low, high], [0, 0], colour="#7f7f7f", dashed=True, points=False)
    return chart.render()
