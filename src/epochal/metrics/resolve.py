"""From what the user passed in `metrics` / `weighted_metrics` to the metric the engine runs.

Keras names mean Keras's definitions: `"accuracy"` picks the binary, categorical or sparse variant
from the loss and output; `"precision"`, `"auc"`, `"f1_score"`... are the metric classes with their
default arguments. Two deviations, on purpose: integer labels reach the confusion metrics one-hot
encoded (Keras refuses them), and `"f1_score"` / `"fbeta_score"` on a single-column output use a
0.5 threshold (Keras's arg-max over one column would call every sample positive).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from epochal.losses import _snake_case
from epochal.metrics.accuracy import (SampleMetric, binary_accuracy, categorical_accuracy,
                                      sparse_categorical_accuracy, sparse_top_k_categorical_accuracy,
                                      top_k_categorical_accuracy)
from epochal.metrics.auc import AUC
from epochal.metrics.base import MeanMetric, Metric, PerSample, TorchMetric, WeightedMean
from epochal.metrics.confusion import FalseNegatives, FalsePositives, Precision, Recall, TrueNegatives, TruePositives
from epochal.metrics.f_score import F1Score, FBetaScore
from epochal.metrics.iou import BinaryIoU
from epochal.metrics.regression import (R2Score, RootMeanSquaredError, cosine_similarity, mean_absolute_error,
                                        mean_absolute_percentage_error, mean_squared_error,
                                        mean_squared_logarithmic_error)

_MEAN_METRICS: dict[str, PerSample] = {
    "binary_accuracy": binary_accuracy,
    "categorical_accuracy": categorical_accuracy,
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "top_k_categorical_accuracy": top_k_categorical_accuracy,
    "sparse_top_k_categorical_accuracy": sparse_top_k_categorical_accuracy,
    "mean_squared_error": mean_squared_error,
    "mean_absolute_error": mean_absolute_error,
    "mean_absolute_percentage_error": mean_absolute_percentage_error,
    "mean_squared_logarithmic_error": mean_squared_logarithmic_error,
    "cosine_similarity": cosine_similarity,
}
_ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error",
            "mape": "mean_absolute_percentage_error", "msle": "mean_squared_logarithmic_error",
            "f_beta_score": "fbeta_score"}
_ACCURACY = ("accuracy", "acc")
# Keras's stateful metric classes reachable by name (snake_case, as Keras's `metrics.get`).
_CLASSES: dict[str, Callable[[], Metric]] = {
    "precision": Precision, "recall": Recall, "auc": AUC, "f1_score": F1Score, "fbeta_score": FBetaScore,
    "true_positives": TruePositives, "false_positives": FalsePositives, "true_negatives": TrueNegatives,
    "false_negatives": FalseNegatives, "root_mean_squared_error": RootMeanSquaredError, "r2_score": R2Score,
    "binary_io_u": BinaryIoU,
}
# Class names as strings too ("AUC", "RootMeanSquaredError"), as Keras accepts; lookups ignore case.
_CLASS_NAMES = {cls.__name__.lower(): key for key, cls in _CLASSES.items() if isinstance(cls, type)}
# Loss names double as metrics (the unweighted per-sample loss), as in Keras.
_LOSS_METRICS = ("binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy",
                 "huber", "log_cosh", "kl_divergence", "poisson", "hinge", "squared_hinge",
                 "categorical_hinge")

KNOWN_NAMES = tuple(sorted({*_MEAN_METRICS, *_ALIASES, *_ACCURACY, *_CLASSES, *_LOSS_METRICS}))

Entry = MeanMetric | Metric | TorchMetric


def metric_name(identifier: Any) -> str:
    """The log key for a metric: the user's string, a metric object's name, a function's name."""
    if isinstance(identifier, str):
        return identifier
    if isinstance(identifier, (Metric, SampleMetric)):
        return identifier.name
    name = getattr(identifier, "__name__", None) or type(identifier).__name__
    return _snake_case(name) if name[:1].isupper() else name


def check_metric(identifier: Any, name: str = "metrics") -> None:
    """Fail at compile time on an unknown metric name or an unusable object."""
    if isinstance(identifier, str):
        if _key(identifier) not in KNOWN_NAMES:
            raise ValueError(f"Unknown metric: {identifier!r}. Known metrics: {', '.join(KNOWN_NAMES)}.")
    elif not callable(identifier) and not isinstance(identifier, Metric):
        raise TypeError(
            f"Each entry of `{name}` must be a metric name, an epochal.metrics.Metric, a torchmetrics Metric "
            f"or a callable (y_true, y_pred) -> tensor. Received: {identifier!r}"
        )
    elif name == "weighted_metrics" and _is_torchmetric(identifier):
        raise TypeError(f"`weighted_metrics` cannot hold a torchmetrics Metric: it takes no sample weights. "
                        f"Put it in `metrics`, or use an epochal.metrics class. Received: {type(identifier).__name__}")


def resolve_metric(identifier: Any, *, loss: Any, y_true: Tensor, y_pred: Tensor, weighted: bool = False) -> Entry:
    """What the user passed, as the metric the engine runs for this output.

    `weighted` metrics (compile's `weighted_metrics`) see the sample weights; a per-sample function
    then becomes the weighted mean `sum(w * v) / sum(w)` over the pass, as in Keras.
    """
    name = metric_name(identifier)
    if _is_torchmetric(identifier):
        return TorchMetric(name, identifier.to(y_pred.device))
    if isinstance(identifier, Metric):
        identifier.build(y_true, y_pred)
        return identifier
    if isinstance(identifier, str) and _key(identifier) in _CLASSES:
        metric = _named_class(_key(identifier), y_pred)
        metric.name = name
        metric.build(y_true, y_pred)
        return metric
    fn = _function(identifier, loss, y_true, y_pred) if isinstance(identifier, str) else identifier
    return WeightedMean(fn, name) if weighted else MeanMetric(name, fn)


def _key(name: str) -> str:
    lowered = name.lower()
    lowered = _CLASS_NAMES.get(lowered, lowered)
    return _ALIASES.get(lowered, lowered)


def _named_class(key: str, y_pred: Tensor) -> Metric:
    if key in ("f1_score", "fbeta_score") and y_pred.shape[-1] == 1:
        return FBetaScore(threshold=0.5) if key == "fbeta_score" else F1Score(threshold=0.5)
    return _CLASSES[key]()


def _function(name: str, loss: Any, y_true: Tensor, y_pred: Tensor) -> PerSample:
    key = _key(name)
    if key in _ACCURACY:
        return _accuracy_for(loss, y_true, y_pred)
    if key == "binary_accuracy" and getattr(loss, "from_logits", False):
        return _logit_binary_accuracy
    if key in _MEAN_METRICS:
        return _MEAN_METRICS[key]
    from epochal import losses  # loss names as metrics

    return losses.get(key).call


def _logit_binary_accuracy(y_true: Tensor, y_pred: Tensor) -> Tensor:
    return binary_accuracy(y_true, y_pred, threshold=0.0)


def _accuracy_for(loss: Any, y_true: Tensor, y_pred: Tensor) -> PerSample:
    """Keras's choice: binary for one output column, sparse for integer labels, else categorical.

    Deviation from Keras, on purpose: after a `from_logits=True` binary loss the threshold is 0
    (a logit of 0 is a probability of 0.5), where Keras would threshold logits at 0.5.
    """
    loss_name = getattr(loss, "name", "")
    if y_pred.shape[-1] == 1 or loss_name == "binary_crossentropy":
        return _logit_binary_accuracy if getattr(loss, "from_logits", False) else binary_accuracy
    if y_true.ndim < y_pred.ndim or (y_true.shape[-1] == 1 and y_pred.shape[-1] > 1):
        return sparse_categorical_accuracy
    return categorical_accuracy


def _is_torchmetric(value: Any) -> bool:
    return any(cls.__module__.startswith("torchmetrics") and cls.__name__ == "Metric" for cls in type(value).__mro__)
