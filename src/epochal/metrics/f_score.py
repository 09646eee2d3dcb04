"""`FBetaScore` and `F1Score`: per-class F-scores from summed counts, as Keras's (same epsilons).

Keras returns one score per class by default (`average=None`); logs hold scalars, so such a
metric logs its mean under its own name (`f1_score`, the macro average) and each class's score
under `f1_score_<class>`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from epochal.metrics.base import Metric
from epochal.metrics.confusion import dense_targets, sample_weights_like

_EPSILON = 1e-7
_AVERAGES = (None, "micro", "macro", "weighted")


class FBetaScore(Metric):
    """`(1 + b²) P R / (b² P + R)` per class, or averaged, over the pass (Keras's `FBetaScore`).

    Args:
        average: `None` (one score per class), `"micro"` (from the counts of all classes together),
            `"macro"` (the mean of the classes' scores) or `"weighted"` (weighted by each class's
            number of true instances). Defaults to `None`.
        beta: How much more recall weighs than precision, > 0. Defaults to `1.0`.
        threshold: A prediction above it counts as positive; `None` marks each sample's arg-max
            (Keras's default, meant for one-hot targets). Defaults to `None`.
        name: The log key. Defaults to `"fbeta_score"`.
    """

    def __init__(self, average: str | None = None, beta: float = 1.0, threshold: float | None = None,
                 name: str = "fbeta_score") -> None:
        super().__init__(name)
        if average not in _AVERAGES:
            raise ValueError(f"`average` must be one of {list(_AVERAGES)}. Received: average={average!r}")
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or beta <= 0:
            raise ValueError(f"`beta` must be a number > 0. Received: beta={beta!r}")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                      or not 0.0 < threshold <= 1.0):
            raise ValueError(f"`threshold` must be None or a number in (0, 1]. Received: threshold={threshold!r}")
        self.average, self.beta, self.threshold = average, float(beta), threshold
        self._classes = 1

    def build(self, y_true: Tensor, y_pred: Tensor) -> None:
        if y_pred.ndim != 2:
            raise ValueError(f"`{self.name}` expects an output of shape (batch, classes). "
                             f"Received: an output of shape {tuple(y_pred.shape)}")
        self._classes = y_pred.shape[-1]

    def suffixes(self) -> list[str]:
        if self.average is not None or self._classes == 1:
            return [""]
        return [""] + [f"_{i}" for i in range(self._classes)]

    def batch_state(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None) -> dict[str, Tensor]:
        y_true = dense_targets(y_true, y_pred).float()
        y_pred = y_pred.float()
        if self.threshold is None:
            predicted = (y_pred >= y_pred.amax(dim=-1, keepdim=True)) & (y_pred.abs() > 1e-9)
        else:
            predicted = y_pred > self.threshold
        predicted = predicted.float()
        weights = sample_weights_like(sample_weight, y_pred)
        axis = None if self.average == "micro" else 0

        def total(values: Tensor) -> Tensor:
            return (values * weights).sum() if axis is None else (values * weights).sum(axis)

        return {"tp": total(predicted * y_true), "fp": total(predicted * (1 - y_true)),
                "fn": total((1 - predicted) * y_true), "support": total(y_true)}

    def value(self, state: Mapping[str, Tensor]) -> Tensor:
        tp, fp, fn = state["tp"], state["fp"], state["fn"]
        precision = tp / (tp + fp + _EPSILON)
        recall = tp / (tp + fn + _EPSILON)
        b2 = self.beta ** 2
        scores = (1 + b2) * precision * recall / (b2 * precision + recall + _EPSILON)
        if self.average == "weighted":
            return (scores * state["support"] / (state["support"].sum() + _EPSILON)).sum()
        if self.average is not None:
            return scores.mean()
        return scores if scores.numel() == 1 else torch.cat([scores.mean().reshape(1), scores])


class F1Score(FBetaScore):
    """The F1 score (`FBetaScore` with `beta=1`): `2 P R / (P + R)` per class, or averaged.

    Args:
        average: `None`, `"micro"`, `"macro"` or `"weighted"` (see `FBetaScore`). Defaults to `None`.
        threshold: A prediction above it counts as positive; `None` marks each sample's arg-max.
            Defaults to `None`.
        name: The log key. Defaults to `"f1_score"`.
    """

    def __init__(self, average: str | None = None, threshold: float | None = None, name: str = "f1_score") -> None:
        super().__init__(average=average, beta=1.0, threshold=threshold, name=name)
