"""Figures of an `Interpretation` with matplotlib (an optional extra): confusion matrix and reliability
diagram for classification, residuals for regression.

The result is typed `Any` here: `Interpretation.plot` calls this module, so importing its class back
(even for typing) would be an import cycle.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from epochal.analysis.plotting import new_axes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure



def plot_interpretation(result: Any) -> Figure:
    """An `Interpretation`'s two panels: confusion matrix and reliability diagram, or residuals against
    predictions and their histogram."""
    first, second = new_axes(2, width=4.6, height=4.0)
    if result.task == "classification":
        _confusion(first, result)
        _reliability(second, result)
    else:
        _residuals(first, second, result)
    return first.figure  # type: ignore[return-value]


def _confusion(axis: Axes, result: Any) -> None:
    if result.confusion_matrix is None:
        axis.set_axis_off()
        return
    names = result.class_names or []
    axis.imshow(result.confusion_matrix, cmap="Blues")
    top = max((max(row) for row in result.confusion_matrix), default=0)
    for i, row in enumerate(result.confusion_matrix):
        for j, value in enumerate(row):
            axis.text(j, i, str(value), ha="center", va="center", fontsize="small",
                      color="white" if value > top / 2 else "black")
    axis.set_xticks(range(len(names)), names, rotation=90 if len(names) > 6 else 0)
    axis.set_yticks(range(len(names)), names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title("confusion matrix")


def _reliability(axis: Axes, result: Any) -> None:
    if result.calibration is None:
        axis.set_axis_off()
        return
    bins = [b for b in result.calibration if b.count]
    axis.bar([b.low for b in bins], [b.accuracy for b in bins], width=[b.high - b.low for b in bins], align="edge",
             alpha=0.6, edgecolor="tab:blue", label="accuracy")
    axis.plot([b.confidence for b in bins], [b.accuracy for b in bins], "o", color="tab:blue",
              label="mean confidence")
    axis.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_xlabel("confidence")
    axis.set_ylabel("accuracy")
    axis.set_title(f"reliability (ECE {result.ece:.3f})")
    axis.legend(fontsize="small")


def _residuals(scatter: Axes, histogram: Axes, result: Any) -> None:
    points: list[Any] = result.residual_points or []
    finite = [(p, r) for p, r in points if math.isfinite(p + r)]
    scatter.scatter([p for p, _ in finite], [r for _, r in finite], s=8, alpha=0.6)
    scatter.axhline(0, color="grey", linestyle="--")
    scatter.set_xlabel("prediction")
    scatter.set_ylabel("residual (target - prediction)")
    scatter.set_title("residuals")
    histogram.hist([r for _, r in finite], bins=30, alpha=0.7)
    histogram.set_xlabel("residual")
    histogram.set_ylabel("samples")
    histogram.set_title("residual distribution")
