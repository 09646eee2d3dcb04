"""`AUC`: the area under the ROC or precision-recall curve, exact by default.

Keras computes the curve at `num_thresholds=200` fixed thresholds, which approximates the area; here
the default (`num_thresholds=None`) takes every distinct prediction as a threshold, which gives the
exact area (for ROC: the Mann-Whitney statistic, ties counting one half) at the cost of keeping the
pass's predictions. `num_thresholds=200` (or `thresholds=[...]`) reproduces Keras's number. Either
way the area is summed with Keras's formulas (`summation_method`, and the interpolated PR curve of
Davis & Goadrich).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from epochal.metrics.base import Metric
from epochal.metrics.confusion import check_thresholds, dense_targets, divide_no_nan, sample_weights_like

_EPSILON = 1e-7
_CURVES = ("ROC", "PR")
_SUMMATIONS = ("interpolation", "minoring", "majoring")


class AUC(Metric):
    """Area under the ROC curve (or the precision-recall curve) over every entry of the output.

    With one-hot targets every entry counts as one binary decision (Keras's default); with
    `multi_label=True` each column gets its own area and the result is their (weighted) mean.
    Integer labels are one-hot encoded first.

    Args:
        num_thresholds: `None` for the exact area, or the number of evenly spaced thresholds Keras
            uses (its default is 200). Defaults to `None`.
        curve: `"ROC"` or `"PR"`. Defaults to `"ROC"`.
        summation_method: `"interpolation"`, `"minoring"` or `"majoring"` (Keras's). Defaults to
            `"interpolation"`.
        name: The log key. Defaults to `"auc"`.
        thresholds: Thresholds in [0, 1] to use instead (Keras adds one just below 0 and above 1).
            Defaults to `None`.
        multi_label: One area per column, then their mean. Defaults to `False`.
        num_labels: Accepted for Keras's signature; the columns are read from the data. Defaults to `None`.
        label_weights: Per-column weights: of the mean with `multi_label`, else of each entry.
            Defaults to `None`.
        from_logits: Whether the output is logits (a sigmoid is applied). Defaults to `False`.
    """

    def __init__(self, num_thresholds: int | None = None, curve: str = "ROC",
                 summation_method: str = "interpolation", name: str = "auc",
                 thresholds: Sequence[float] | None = None, multi_label: bool = False,
                 num_labels: int | None = None, label_weights: Sequence[float] | None = None,
                 from_logits: bool = False) -> None:
        super().__init__(name)
        if curve.upper() not in _CURVES:
            raise ValueError(f"`curve` must be one of {list(_CURVES)}. Received: curve={curve!r}")
        if summation_method.lower() not in _SUMMATIONS:
            raise ValueError(f"`summation_method` must be one of {list(_SUMMATIONS)}. "
                             f"Received: summation_method={summation_method!r}")
        if num_thresholds is not None and (not isinstance(num_thresholds, int) or num_thresholds <= 1):
            raise ValueError(f"`num_thresholds` must be None (exact) or an integer > 1. "
                             f"Received: num_thresholds={num_thresholds!r}")
        if num_labels is not None and not multi_label:
            raise ValueError("`num_labels` is needed only when `multi_label` is True. "
                             f"Received: num_labels={num_labels!r}")
        self.curve, self.summation_method = curve.upper(), summation_method.lower()
        self.multi_label, self.num_labels, self.from_logits = multi_label, num_labels, from_logits
        self.label_weights = None if label_weights is None else torch.as_tensor(label_weights, dtype=torch.float32)
        self.num_thresholds = num_thresholds
        self._thresholds = _keras_thresholds(num_thresholds, thresholds)
        self.concatenated = () if self._thresholds is not None else ("pred", "positive", "weight")

    def batch_state(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None) -> dict[str, Tensor]:
        y_true = dense_targets(y_true, y_pred)
        weights = sample_weights_like(sample_weight, y_pred)
        y_pred = y_pred.float().sigmoid() if self.from_logits else y_pred.float()
        if self.label_weights is not None and not self.multi_label:
            weights = weights * self.label_weights.to(weights.device)
        columns = y_pred.shape[-1] if self.multi_label else 1
        pred, positive, weight = (t.reshape(-1, columns) for t in (y_pred, (y_true != 0).float(), weights))
        if self._thresholds is None:  # kept whole: 5 bytes per entry, 9 with sample or label weights
            state = {"pred": pred, "positive": positive.bool()}
            return state if sample_weight is None and self.label_weights is None else {**state, "weight": weight}
        buckets = torch.searchsorted(self._thresholds.to(pred.device), pred)  # how many thresholds lie below
        return {"positives": _histogram(buckets, weight * positive, len(self._thresholds) + 1),
                "negatives": _histogram(buckets, weight * (1 - positive), len(self._thresholds) + 1)}

    def value(self, state: Mapping[str, Tensor]) -> Tensor:
        if self._thresholds is None:
            weight = state["weight"] if "weight" in state else torch.ones_like(state["pred"])
            state = _exact_histograms(state["pred"], state["positive"].float(), weight)
        positives, negatives = state["positives"], state["negatives"]
        # A prediction is positive at threshold j when more than j thresholds lie below it.
        tp, fp = _above(positives), _above(negatives)
        fn, tn = positives.sum(0) - tp, negatives.sum(0) - fp
        by_label = self._area(tp, fp, tn, fn)
        if not self.multi_label:
            return by_label[0]
        if self.label_weights is None:
            return by_label.mean()
        weights = self.label_weights.to(by_label)
        return divide_no_nan((by_label * weights).sum(), weights.sum())

    def _area(self, tp: Tensor, fp: Tensor, tn: Tensor, fn: Tensor) -> Tensor:
        """Keras's sum over consecutive thresholds (rows), one area per column."""
        if self.curve == "PR" and self.summation_method == "interpolation":
            return _interpolated_pr_area(tp, fp, fn)
        recall = divide_no_nan(tp, tp + fn)
        if self.curve == "ROC":
            x, y = divide_no_nan(fp, fp + tn), recall
        else:
            x, y = recall, divide_no_nan(tp, tp + fp)
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2
        elif self.summation_method == "minoring":
            heights = torch.minimum(y[:-1], y[1:])
        else:
            heights = torch.maximum(y[:-1], y[1:])
        return ((x[:-1] - x[1:]) * heights).sum(0)


def _keras_thresholds(num_thresholds: int | None, thresholds: Sequence[float] | None) -> Tensor | None:
    """Keras's thresholds (ascending, with one just below 0 and one above 1), or None for exact."""
    if thresholds is not None:
        inner = sorted(check_thresholds(thresholds, 0.5))
    elif num_thresholds is not None:
        inner = [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
    else:
        return None
    return torch.tensor([0.0 - _EPSILON, *inner, 1.0 + _EPSILON], dtype=torch.float32)


def _histogram(buckets: Tensor, weights: Tensor, size: int) -> Tensor:
    """Per column, the sum of `weights` falling in each bucket: shape `(size, columns)`."""
    columns = buckets.shape[1]
    flat = (buckets * columns + torch.arange(columns, device=buckets.device)).reshape(-1)
    totals = torch.zeros(size * columns, dtype=torch.float64, device=weights.device)
    return totals.index_add_(0, flat, weights.reshape(-1).to(totals.dtype)).reshape(size, columns)


def _exact_histograms(pred: Tensor, positive: Tensor, weight: Tensor) -> dict[str, Tensor]:
    """Histograms over the thresholds [-inf, every distinct prediction]: the exact curve."""
    distinct = torch.unique(pred)
    buckets = torch.searchsorted(distinct, pred) + 1  # -inf lies below every prediction
    size = len(distinct) + 2  # one bucket more than thresholds
    return {"positives": _histogram(buckets, weight * positive, size),
            "negatives": _histogram(buckets, weight * (1 - positive), size)}


def _above(histogram: Tensor) -> Tensor:
    """For each threshold j, the weight in buckets above j (predictions above threshold j)."""
    from_here = histogram.flip(0).cumsum(0).flip(0)
    return from_here[1:]


def _interpolated_pr_area(tp: Tensor, fp: Tensor, fn: Tensor) -> Tensor:
    """Davis & Goadrich's interpolated area under the PR curve, in Keras's closed form."""
    dtp = tp[:-1] - tp[1:]
    p = tp + fp
    dp = p[:-1] - p[1:]
    slope = divide_no_nan(dtp, dp.clamp_min(0))
    intercept = tp[1:] - slope * p[1:]
    both = (p[:-1] > 0) & (p[1:] > 0)
    ratio = torch.where(both, divide_no_nan(p[:-1], p[1:].clamp_min(0)), torch.ones_like(p[1:]))
    return divide_no_nan(slope * (dtp + intercept * ratio.log()), (tp[1:] + fn[1:]).clamp_min(0)).sum(0)
