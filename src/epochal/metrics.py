"""Metrics: Keras-exact per-sample formulas for the common names, torchmetrics for the rest.

A *mean* metric returns one value per sample; its batch value is their mean and its epoch value
the sample-weighted mean over batches, which is exact. A *stateful* metric (any torchmetrics
`Metric`, and the names `auc`, `precision`, `recall`, `f1_score`) accumulates its own state and is
computed once over the whole epoch.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch

PerSample = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _per_sample(values: torch.Tensor) -> torch.Tensor:
    """Mean over every non-batch axis, so a batch mean equals Keras's mean over all elements."""
    return values.reshape(values.shape[0], -1).float().mean(dim=1) if values.ndim > 1 else values.float()


def binary_accuracy(y_true: torch.Tensor, y_pred: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    return _per_sample((y_pred > threshold).to(y_true.dtype) == y_true)


def categorical_accuracy(y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
    return _per_sample(y_true.argmax(dim=-1) == y_pred.argmax(dim=-1))


def sparse_categorical_accuracy(y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
    return _per_sample(y_true.reshape(y_pred.shape[:-1]) == y_pred.argmax(dim=-1))


def top_k_categorical_accuracy(y_true: torch.Tensor, y_pred: torch.Tensor, k: int = 5) -> torch.Tensor:
    return sparse_top_k_categorical_accuracy(y_true.argmax(dim=-1), y_pred, k)


def sparse_top_k_categorical_accuracy(y_true: torch.Tensor, y_pred: torch.Tensor, k: int = 5) -> torch.Tensor:
    top = y_pred.topk(min(k, y_pred.shape[-1]), dim=-1).indices
    return _per_sample((top == y_true.reshape(y_pred.shape[:-1]).unsqueeze(-1)).any(dim=-1))


def mean_squared_error(y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
    return _per_sample((y_pred - y_true) ** 2)


def mean_absolute_error(y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
    return _per_sample((y_pred - y_true).abs())


def mean_absolute_percentage_error(y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
    return _per_sample(100.0 * ((y_true - y_pred) / y_true.abs().clamp_min(1e-7)).abs())


def mean_squared_logarithmic_error(y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
    first = torch.log1p(y_pred.clamp_min(1e-7 - 1.0).clamp_min(0.0))
    second = torch.log1p(y_true.clamp_min(0.0))
    return _per_sample((first - second) ** 2)


def cosine_similarity(y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
    return _per_sample(torch.nn.functional.cosine_similarity(y_true, y_pred, dim=-1, eps=1e-12))


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
            "mape": "mean_absolute_percentage_error", "msle": "mean_squared_logarithmic_error"}
_ACCURACY = ("accuracy", "acc")
_STATEFUL = ("auc", "precision", "recall", "f1_score")
# Loss names double as metrics (the unweighted per-sample loss), as in Keras.
_LOSS_METRICS = ("binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy",
                 "huber", "log_cosh", "kl_divergence", "poisson", "hinge", "squared_hinge",
                 "categorical_hinge")

KNOWN_NAMES = tuple(sorted({*_MEAN_METRICS, *_ALIASES, *_ACCURACY, *_STATEFUL, *_LOSS_METRICS}))


class MeanMetric:
    """A metric with one value per sample; the batch value is their mean."""

    stateful = False

    def __init__(self, name: str, fn: PerSample) -> None:
        self.name = name
        self.fn = fn

    def __call__(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        value = self.fn(y_true, y_pred)
        return value.float().mean() if value.ndim else value.float()


class StatefulMetric:
    """A torchmetrics `Metric`: batch values from `forward`, the epoch value from `compute()`."""

    stateful = True

    def __init__(self, name: str, metric: Any) -> None:
        self.name = name
        self.metric = metric

    def __call__(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        if not torch.is_floating_point(y_true) and y_pred.ndim == y_true.ndim + 1 and y_pred.shape[-1] == 1:
            y_pred = y_pred.squeeze(-1)
        elif y_pred.ndim == y_true.ndim and y_pred.shape[-1] == 1:
            y_pred, y_true = y_pred.squeeze(-1), y_true.squeeze(-1)
        return self.metric(y_pred, y_true.long()).detach().float()

    def compute(self) -> torch.Tensor:
        return self.metric.compute().detach().float()

    def reset(self) -> None:
        self.metric.reset()


def metric_name(identifier: Any) -> str:
    """The log key for a metric: the user's string, a function's name, a class name in snake_case."""
    if isinstance(identifier, str):
        return identifier
    name = getattr(identifier, "__name__", None) or type(identifier).__name__
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() if name[:1].isupper() else name


def check_metric(identifier: Any, name: str = "metrics") -> None:
    """Fail at compile time on an unknown metric name or an unusable object."""
    if isinstance(identifier, str):
        if identifier.lower() not in KNOWN_NAMES:
            raise ValueError(f"Unknown metric: {identifier!r}. Known metrics: {', '.join(KNOWN_NAMES)}.")
    elif not callable(identifier):
        raise TypeError(
            f"Each entry of `{name}` must be a metric name, a torchmetrics Metric or a callable "
            f"(y_true, y_pred) -> tensor. Received: {identifier!r}"
        )


def resolve_metric(
    identifier: Any, *, loss: Any, y_true: torch.Tensor, y_pred: torch.Tensor
) -> MeanMetric | StatefulMetric:
    """Turn what the user passed into a metric for this output, picking Keras's accuracy variant."""
    name = metric_name(identifier)
    if not isinstance(identifier, str):
        if _is_torchmetric(identifier):
            return StatefulMetric(name, identifier.to(y_pred.device))
        return MeanMetric(name, identifier)
    key = _ALIASES.get(identifier.lower(), identifier.lower())
    if key in _ACCURACY:
        return MeanMetric(name, _accuracy_for(loss, y_true, y_pred))
    if key == "binary_accuracy" and getattr(loss, "from_logits", False):
        return MeanMetric(name, _logit_binary_accuracy)
    if key in _MEAN_METRICS:
        return MeanMetric(name, _MEAN_METRICS[key])
    if key in _STATEFUL:
        return StatefulMetric(name, _torchmetric(key, y_pred).to(y_pred.device))
    from epochal import losses  # loss names as metrics

    return MeanMetric(name, losses.get(key).call)


def _logit_binary_accuracy(y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
    return binary_accuracy(y_true, y_pred, threshold=0.0)


def _accuracy_for(loss: Any, y_true: torch.Tensor, y_pred: torch.Tensor) -> PerSample:
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


def _torchmetric(key: str, y_pred: torch.Tensor) -> Any:
    try:
        from torchmetrics import classification
    except ImportError:
        raise ImportError(
            f"The metric {key!r} is computed by torchmetrics: pip install 'epochal[metrics]'"
        ) from None
    classes = y_pred.shape[-1]
    stem = {"auc": "AUROC", "precision": "Precision", "recall": "Recall", "f1_score": "F1Score"}[key]
    if classes == 1:
        return getattr(classification, f"Binary{stem}")(validate_args=False)
    return getattr(classification, f"Multiclass{stem}")(num_classes=classes, average="macro", validate_args=False)
