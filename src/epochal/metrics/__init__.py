"""Metrics with Keras's names, arguments and numbers, one module per family.

Per-sample metrics (accuracies, errors) are exact means the loop accumulates; `Metric`s (precision,
recall, AUC, F-scores, IoU, RMSE, R²) sum statistics over the pass and compute once at its end.
torchmetrics objects and plain callables `(y_true, y_pred) -> per-sample values` work too.

Example:
    >>> import torch
    >>> metric = Precision()
    >>> metric.update_state(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([[0.2, 0.9], [0.6, 0.7]]))
    >>> round(float(metric.result()), 4)  # 2 of the 3 entries above 0.5 are positive
    0.6667
"""

from epochal.metrics.accuracy import (BinaryAccuracy, CategoricalAccuracy, SampleMetric, SparseCategoricalAccuracy,
                                      SparseTopKCategoricalAccuracy, TopKCategoricalAccuracy, binary_accuracy,
                                      categorical_accuracy, sparse_categorical_accuracy,
                                      sparse_top_k_categorical_accuracy, top_k_categorical_accuracy)
from epochal.metrics.auc import AUC
from epochal.metrics.base import MeanMetric, Metric, TorchMetric, WeightedMean
from epochal.metrics.confusion import FalseNegatives, FalsePositives, Precision, Recall, TrueNegatives, TruePositives
from epochal.metrics.f_score import F1Score, FBetaScore
from epochal.metrics.iou import IoU, BinaryIoU, MeanIoU, OneHotIoU, OneHotMeanIoU
from epochal.metrics.regression import (R2Score, RootMeanSquaredError, cosine_similarity, mean_absolute_error,
                                        mean_absolute_percentage_error, mean_squared_error,
                                        mean_squared_logarithmic_error)
from epochal.metrics.resolve import KNOWN_NAMES, check_metric, metric_name, resolve_metric

__all__ = [
    "AUC", "BinaryAccuracy", "BinaryIoU", "CategoricalAccuracy", "F1Score", "FBetaScore", "FalseNegatives",
    "FalsePositives", "IoU", "KNOWN_NAMES", "MeanIoU", "MeanMetric", "Metric", "OneHotIoU", "OneHotMeanIoU",
    "Precision", "R2Score", "Recall", "RootMeanSquaredError", "SampleMetric", "SparseCategoricalAccuracy",
    "SparseTopKCategoricalAccuracy", "TopKCategoricalAccuracy", "TorchMetric", "TrueNegatives", "TruePositives",
    "WeightedMean", "binary_accuracy", "categorical_accuracy", "check_metric", "cosine_similarity",
    "mean_absolute_error", "mean_absolute_percentage_error", "mean_squared_error",
    "mean_squared_logarithmic_error", "metric_name", "resolve_metric", "sparse_categorical_accuracy",
    "sparse_top_k_categorical_accuracy", "top_k_categorical_accuracy",
]
