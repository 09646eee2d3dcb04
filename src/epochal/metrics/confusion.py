"""Confusion-matrix metrics at thresholds: `Precision`, `Recall` and the `TruePositives`... counts (Keras).

Every entry of the output counts: a one-hot target with 3 classes gives 3 binary decisions per
sample, each positive when `y_pred > threshold` (Keras's "micro" reading). Integer labels are one-hot
encoded first (Keras refuses them here). `top_k` keeps each sample's `k` largest entries and
`class_id` looks at one column only, as in Keras.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from epochal.metrics.base import Metric

NEG_INF = -1e10  # Keras's value for entries outside the top k


def dense_targets(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """`y_true` shaped like `y_pred`; integer class labels for several columns are one-hot encoded."""
    if y_true.shape == y_pred.shape:
        return y_true
    labels_shape = y_pred.shape[:-1]
    if y_pred.shape[-1] > 1 and y_true.shape in (labels_shape, (*labels_shape, 1)):
        return F.one_hot(y_true.reshape(labels_shape).long(), y_pred.shape[-1]).to(y_pred.dtype)
    if y_true.numel() == y_pred.numel():
        return y_true.reshape(y_pred.shape)
    raise ValueError(f"`y` has shape {tuple(y_true.shape)} but the model's output has shape {tuple(y_pred.shape)}; "
                     "a confusion metric needs targets of the output's shape, or integer class labels.")


def sample_weights_like(sample_weight: Tensor | None, y_pred: Tensor) -> Tensor:
    """One weight per entry of `y_pred`: each sample's weight repeated over its entries."""
    if sample_weight is None:
        return torch.ones_like(y_pred, dtype=torch.float32)
    weights = sample_weight.reshape(sample_weight.shape[0], *([1] * (y_pred.ndim - 1)))
    return weights.to(torch.float32).expand(y_pred.shape)


def top_k_only(y_pred: Tensor, k: int) -> Tensor:
    """`y_pred` with all but each row's `k` largest entries set to -1e10 (Keras's `_filter_top_k`)."""
    top = y_pred.topk(min(k, y_pred.shape[-1]), dim=-1).indices
    keep = torch.zeros_like(y_pred, dtype=torch.bool).scatter_(-1, top, True)
    return torch.where(keep, y_pred, torch.full_like(y_pred, NEG_INF))


def check_thresholds(thresholds: float | Sequence[float] | None, default: float) -> list[float]:
    """Keras's thresholds argument as a list, each in [0, 1]."""
    if thresholds is None:
        return [default]
    values = [thresholds] if isinstance(thresholds, (int, float)) else list(thresholds)
    if not values or any(not isinstance(t, (int, float)) or not 0.0 <= t <= 1.0 for t in values):
        raise ValueError(f"`thresholds` must be a number or a list of numbers in [0, 1]. Received: thresholds={thresholds!r}")
    return [float(t) for t in values]


class ConfusionMetric(Metric):
    """True/false positive/negative counts at each threshold; subclasses turn them into a value.

    Args:
        thresholds: A threshold in [0, 1] or a list of them; a prediction is positive above it.
            Defaults to `None` (0.5, or every top-k entry when `top_k` is set).
        top_k: Count only each sample's `k` largest entries as predicted positive. Defaults to `None`.
        class_id: Look at this column only. Defaults to `None`.
        name: The log key. Defaults to the snake_case class name.
    """

    def __init__(self, thresholds: float | Sequence[float] | None = None, top_k: int | None = None,
                 class_id: int | None = None, name: str | None = None) -> None:
        super().__init__(name)
        if top_k is not None and not _is_int(top_k, minimum=1):
            raise ValueError(f"`top_k` must be None or a positive integer. Received: top_k={top_k!r}")
        if class_id is not None and not _is_int(class_id, minimum=0):
            raise ValueError(f"`class_id` must be None or a non-negative integer. Received: class_id={class_id!r}")
        self.thresholds = check_thresholds(thresholds, 0.5 if top_k is None else NEG_INF)
        self.top_k = top_k
        self.class_id = class_id

    def build(self, y_true: Tensor, y_pred: Tensor) -> None:
        if self.class_id is not None and (y_pred.ndim < 2 or self.class_id >= y_pred.shape[-1]):
            raise ValueError(f"`class_id={self.class_id}` needs an output with more than {self.class_id} columns. "
                             f"Received: an output of shape {tuple(y_pred.shape)}")

    def suffixes(self) -> list[str]:
        return [""] if len(self.thresholds) == 1 else [f"_{i}" for i in range(len(self.thresholds))]

    def value(self, state: Mapping[str, Tensor]) -> Tensor:
        values = self.from_counts(state)
        return values[0] if len(self.thresholds) == 1 else values

    def from_counts(self, state: Mapping[str, Tensor]) -> Tensor:
        """The value at each threshold from the counts `tp`, `fp`, `tn`, `fn`."""
        raise NotImplementedError(f"{type(self).__name__} must implement `from_counts`.")

    def batch_state(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None) -> dict[str, Tensor]:
        y_true = dense_targets(y_true, y_pred)
        weights = sample_weights_like(sample_weight, y_pred)
        y_pred = y_pred.float()
        if self.top_k is not None:
            y_pred = top_k_only(y_pred, self.top_k)
        if self.class_id is not None:
            y_true, y_pred, weights = (t[..., self.class_id] for t in (y_true, y_pred, weights))
        positive = (y_true != 0).reshape(1, -1)
        predicted = y_pred.reshape(1, -1) > torch.tensor(self.thresholds, device=y_pred.device).reshape(-1, 1)
        weights = weights.reshape(1, -1)
        return {"tp": (weights * (predicted & positive)).sum(1), "fp": (weights * (predicted & ~positive)).sum(1),
                "tn": (weights * (~predicted & ~positive)).sum(1), "fn": (weights * (~predicted & positive)).sum(1)}


def _is_int(value: object, *, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def divide_no_nan(numerator: Tensor, denominator: Tensor) -> Tensor:
    """`numerator / denominator`, 0 where the denominator is 0 (Keras's `divide_no_nan`)."""
    safe = torch.where(denominator == 0, torch.ones_like(denominator), denominator)
    return torch.where(denominator == 0, torch.zeros_like(numerator), numerator / safe)


class Precision(ConfusionMetric):
    """`TP / (TP + FP)` over every entry of the output at each threshold, as Keras's `Precision`."""

    def from_counts(self, state: Mapping[str, Tensor]) -> Tensor:
        return divide_no_nan(state["tp"], state["tp"] + state["fp"])


class Recall(ConfusionMetric):
    """`TP / (TP + FN)` over every entry of the output at each threshold, as Keras's `Recall`."""

    def from_counts(self, state: Mapping[str, Tensor]) -> Tensor:
        return divide_no_nan(state["tp"], state["tp"] + state["fn"])


class _Count(ConfusionMetric):
    """One of the four counts, named by `counted`."""

    counted: str

    def from_counts(self, state: Mapping[str, Tensor]) -> Tensor:
        return state[self.counted]


class TruePositives(_Count):
    """The (weighted) number of entries predicted positive that are positive."""

    counted = "tp"


class FalsePositives(_Count):
    """The (weighted) number of entries predicted positive that are negative."""

    counted = "fp"


class TrueNegatives(_Count):
    """The (weighted) number of entries predicted negative that are negative."""

    counted = "tn"


class FalseNegatives(_Count):
    """The (weighted) number of entries predicted negative that are positive."""

    counted = "fn"
