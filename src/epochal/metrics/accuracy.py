"""Accuracies: one value per sample (1 right, 0 wrong), as functions and as Keras's metric classes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from epochal.losses import _snake_case
from epochal.metrics.base import per_sample


def binary_accuracy(y_true: Tensor, y_pred: Tensor, threshold: float = 0.5) -> Tensor:
    return per_sample((y_pred > threshold).to(y_true.dtype) == y_true)


def categorical_accuracy(y_true: Tensor, y_pred: Tensor) -> Tensor:
    return per_sample(y_true.argmax(dim=-1) == y_pred.argmax(dim=-1))


def sparse_categorical_accuracy(y_true: Tensor, y_pred: Tensor) -> Tensor:
    return per_sample(y_true.reshape(y_pred.shape[:-1]) == y_pred.argmax(dim=-1))


def top_k_categorical_accuracy(y_true: Tensor, y_pred: Tensor, k: int = 5) -> Tensor:
    return sparse_top_k_categorical_accuracy(y_true.argmax(dim=-1), y_pred, k)


def sparse_top_k_categorical_accuracy(y_true: Tensor, y_pred: Tensor, k: int = 5) -> Tensor:
    top = y_pred.topk(min(k, y_pred.shape[-1]), dim=-1).indices
    return per_sample((top == y_true.reshape(y_pred.shape[:-1]).unsqueeze(-1)).any(dim=-1))


class SampleMetric:
    """A Keras metric class that is the mean of one value per sample: no state, exact epoch means.

    A subclass names its per-sample function (`fn`); the keyword arguments given here are passed to
    it. In `weighted_metrics` it becomes a weighted mean over the pass (`sum(w * v) / sum(w)`).

    Args:
        name: The log key. Defaults to the snake_case class name.
        **arguments: Passed to `fn` with each batch.
    """

    fn: Callable[..., Tensor]

    def __init__(self, name: str | None = None, **arguments: Any) -> None:
        self.name = name if name is not None else _snake_case(type(self).__name__)
        self.arguments = arguments

    def __call__(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        """One value per sample, shape `(N,)`."""
        return type(self).fn(y_true, y_pred, **self.arguments)


class BinaryAccuracy(SampleMetric):
    """How often `y_pred > threshold` equals the 0/1 target.

    Args:
        threshold: The decision threshold. Defaults to `0.5`.
        name: The log key. Defaults to `"binary_accuracy"`.
    """

    fn = binary_accuracy

    def __init__(self, threshold: float = 0.5, name: str | None = None) -> None:
        super().__init__(name, threshold=threshold)


class CategoricalAccuracy(SampleMetric):
    """How often the arg-max of `y_pred` is that of the one-hot target.

    Args:
        name: The log key. Defaults to `"categorical_accuracy"`.
    """

    fn = categorical_accuracy


class SparseCategoricalAccuracy(SampleMetric):
    """How often the arg-max of `y_pred` is the integer label.

    Args:
        name: The log key. Defaults to `"sparse_categorical_accuracy"`.
    """

    fn = sparse_categorical_accuracy


class TopKCategoricalAccuracy(SampleMetric):
    """How often the one-hot target's class is among the `k` largest entries of `y_pred`.

    Args:
        k: How many of the top classes count. Defaults to `5`.
        name: The log key. Defaults to `"top_k_categorical_accuracy"`.
    """

    fn = top_k_categorical_accuracy

    def __init__(self, k: int = 5, name: str | None = None) -> None:
        super().__init__(name, k=k)


class SparseTopKCategoricalAccuracy(TopKCategoricalAccuracy):
    """How often the integer label is among the `k` largest entries of `y_pred`.

    Args:
        k: How many of the top classes count. Defaults to `5`.
        name: The log key. Defaults to `"sparse_top_k_categorical_accuracy"`.
    """

    fn = sparse_top_k_categorical_accuracy
