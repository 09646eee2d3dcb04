"""Regression metrics: per-sample errors, and the pass-level RMSE and R² (Keras's formulas)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from epochal.metrics.base import Metric, WeightedMean, per_sample


def mean_squared_error(y_true: Tensor, y_pred: Tensor) -> Tensor:
    return per_sample((y_pred - y_true) ** 2)


def mean_absolute_error(y_true: Tensor, y_pred: Tensor) -> Tensor:
    return per_sample((y_pred - y_true).abs())


def mean_absolute_percentage_error(y_true: Tensor, y_pred: Tensor) -> Tensor:
    return per_sample(100.0 * ((y_true - y_pred) / y_true.abs().clamp_min(1e-7)).abs())


def mean_squared_logarithmic_error(y_true: Tensor, y_pred: Tensor) -> Tensor:
    first = torch.log1p(y_pred.clamp_min(1e-7 - 1.0).clamp_min(0.0))
    second = torch.log1p(y_true.clamp_min(0.0))
    return per_sample((first - second) ** 2)


def cosine_similarity(y_true: Tensor, y_pred: Tensor) -> Tensor:
    return per_sample(F.cosine_similarity(y_true, y_pred, dim=-1, eps=1e-12))


class RootMeanSquaredError(WeightedMean):
    """`sqrt(mean squared error)` over the whole pass (not a mean of batch roots), weighted as Keras.

    Args:
        name: The log key. Defaults to `"root_mean_squared_error"`.
    """

    def __init__(self, name: str = "root_mean_squared_error") -> None:
        super().__init__(mean_squared_error, name)

    def value(self, state: Mapping[str, Tensor]) -> Tensor:
        return super().value(state).sqrt()


class R2Score(Metric):
    """The coefficient of determination, `1 - SS_res / SS_tot` per output column, as Keras's `R2Score`.

    Args:
        class_aggregation: How the columns' scores combine: `"uniform_average"`,
            `"variance_weighted_average"` or `None` (one value per column, logged as
            `r2_score_<i>`). Defaults to `"uniform_average"`.
        num_regressors: Above 0, the adjusted R² for that many independent variables (the plain R²
            when they leave no degree of freedom). Defaults to `0`.
        name: The log key. Defaults to `"r2_score"`.
    """

    _AGGREGATIONS = ("uniform_average", "variance_weighted_average", None)

    def __init__(self, class_aggregation: str | None = "uniform_average", num_regressors: int = 0,
                 name: str = "r2_score") -> None:
        super().__init__(name)
        if class_aggregation not in self._AGGREGATIONS:
            raise ValueError(f"`class_aggregation` must be one of {list(self._AGGREGATIONS)}. "
                             f"Received: class_aggregation={class_aggregation!r}")
        if not isinstance(num_regressors, int) or num_regressors < 0:
            raise ValueError(f"`num_regressors` must be a non-negative integer. Received: num_regressors={num_regressors!r}")
        self.class_aggregation = class_aggregation
        self.num_regressors = num_regressors
        self._columns = 1

    def suffixes(self) -> list[str]:
        return [""] if self.class_aggregation is not None or self._columns == 1 else [
            f"_{i}" for i in range(self._columns)]

    def build(self, y_true: Tensor, y_pred: Tensor) -> None:
        self._columns = y_pred.reshape(y_pred.shape[0], -1).shape[1] if y_pred.ndim > 1 else 1

    def batch_state(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None) -> dict[str, Tensor]:
        y_true, y_pred = (t.reshape(t.shape[0], -1).float() for t in (y_true, y_pred))
        weights = torch.ones_like(y_true) if sample_weight is None else sample_weight.reshape(-1, 1).to(y_true).expand_as(y_true)
        weighted = y_true * weights
        return {"sum": weighted.sum(0), "squared_sum": (y_true * weighted).sum(0),
                "total_mse": ((y_true - y_pred) ** 2 * weights).sum(0), "count": weights.sum(0),
                "num_samples": y_true.new_tensor(float(y_true.numel()))}

    def value(self, state: Mapping[str, Tensor]) -> Tensor:
        mean = state["sum"] / state["count"]
        total = state["squared_sum"] - state["sum"] * mean
        raw = 1 - state["total_mse"] / total
        raw = torch.where(torch.isinf(raw), torch.zeros_like(raw), raw)
        if self.class_aggregation == "uniform_average":
            score = raw.mean()
        elif self.class_aggregation == "variance_weighted_average":
            score = (total * raw).sum() / total.sum()
        else:
            score = raw
        if not self.num_regressors:
            return score
        # Keras falls back to the plain R² when the regressors leave no degree of freedom.
        n, p = state["num_samples"], self.num_regressors
        return torch.where(n - 1 > p, 1 - (1 - score) * (n - 1) / (n - p - 1).clamp_min(1), score)
