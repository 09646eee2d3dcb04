"""Intersection over union from a confusion matrix summed over the pass: Keras's `IoU` family.

As in Keras, `IoU` and `MeanIoU` read integer class ids for both targets and predictions unless
`sparse_y_true` / `sparse_y_pred` is False (then the arg-max over `axis` is taken); the `OneHot`
variants take the arg-max of both. Sample weights stay fractional (Keras casts them to integers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from epochal.metrics.base import Metric

_EPSILON = 1e-7


class IoU(Metric):
    """`TP / (TP + FP + FN)` for each class in `target_class_ids`, averaged over those present.

    Args:
        num_classes: The number of classes (the confusion matrix is `num_classes` square).
        target_class_ids: The classes whose IoU is averaged.
        name: The log key. Defaults to `"io_u"` (Keras's name).
        ignore_class: A target class id left out (a "void" label). Defaults to `None`.
        sparse_y_true: Whether targets are class ids (else one-hot: arg-max). Defaults to `True`.
        sparse_y_pred: Whether predictions are class ids (else scores: arg-max). Defaults to `True`.
        axis: The class axis for the arg-max. Defaults to `-1`.
    """

    def __init__(self, num_classes: int, target_class_ids: Sequence[int], name: str | None = None,
                 ignore_class: int | None = None, sparse_y_true: bool = True, sparse_y_pred: bool = True,
                 axis: int = -1) -> None:
        super().__init__(name)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"`num_classes` must be a positive integer. Received: num_classes={num_classes!r}")
        ids = list(target_class_ids)
        if not ids or any(not isinstance(i, int) or not 0 <= i < num_classes for i in ids):
            raise ValueError(f"`target_class_ids` must be class ids in [0, {num_classes}). "
                             f"Received: target_class_ids={target_class_ids!r}")
        self.num_classes, self.target_class_ids, self.ignore_class = num_classes, ids, ignore_class
        self.sparse_y_true, self.sparse_y_pred, self.axis = sparse_y_true, sparse_y_pred, axis

    def classes(self, y_true: Tensor, y_pred: Tensor) -> tuple[Tensor, Tensor]:
        """Target and predicted class ids, flattened."""
        if not self.sparse_y_true:
            y_true = y_true.argmax(dim=self.axis)
        if not self.sparse_y_pred:
            y_pred = y_pred.argmax(dim=self.axis)
        return y_true.reshape(-1).long(), y_pred.reshape(-1).long()

    def batch_state(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None) -> dict[str, Tensor]:
        true, pred = self.classes(y_true, y_pred)
        weights = torch.ones_like(true, dtype=torch.float32) if sample_weight is None else (
            sample_weight.reshape(sample_weight.shape[0], -1).to(torch.float32).expand(-1, true.numel() // len(sample_weight))
            .reshape(-1))
        n = self.num_classes
        valid = (true >= 0) & (true < n) & (pred >= 0) & (pred < n)
        if self.ignore_class is not None:
            valid &= true != self.ignore_class
        cells = torch.where(valid, true * n + pred, torch.zeros_like(true))
        matrix = torch.zeros(n * n, dtype=torch.float64, device=true.device)
        matrix.index_add_(0, cells, torch.where(valid, weights, torch.zeros_like(weights)).to(matrix.dtype))
        return {"confusion_matrix": matrix.reshape(n, n)}

    def value(self, state: Mapping[str, Tensor]) -> Tensor:
        matrix = state["confusion_matrix"]
        true_positives = matrix.diagonal()
        denominator = matrix.sum(0) + matrix.sum(1) - true_positives
        ids = torch.tensor(self.target_class_ids, device=matrix.device)
        true_positives, denominator = true_positives[ids].float(), denominator[ids].float()
        valid = denominator > 1e-9
        iou = torch.where(valid, true_positives / (denominator + _EPSILON), torch.zeros_like(denominator))
        return iou.sum() / (valid.sum() + _EPSILON)


class MeanIoU(IoU):
    """The mean IoU over all `num_classes` classes (those absent from targets and predictions left out).

    Args:
        num_classes: The number of classes.
        name: The log key. Defaults to `"mean_io_u"`.
        ignore_class: A target class id left out. Defaults to `None`.
        sparse_y_true: Whether targets are class ids (else one-hot). Defaults to `True`.
        sparse_y_pred: Whether predictions are class ids (else scores). Defaults to `True`.
        axis: The class axis for the arg-max. Defaults to `-1`.
    """

    def __init__(self, num_classes: int, name: str | None = None, ignore_class: int | None = None,
                 sparse_y_true: bool = True, sparse_y_pred: bool = True, axis: int = -1) -> None:
        super().__init__(num_classes, list(range(num_classes)) if isinstance(num_classes, int) else [], name,
                         ignore_class, sparse_y_true, sparse_y_pred, axis)


class BinaryIoU(IoU):
    """IoU of classes 0 and/or 1 for a single-column output, positive at `y_pred >= threshold`.

    Args:
        target_class_ids: `[0]`, `[1]` or `[0, 1]`. Defaults to `(0, 1)`.
        threshold: Predictions at or above it are class 1. Defaults to `0.5`.
        name: The log key. Defaults to `"binary_io_u"`.
    """

    def __init__(self, target_class_ids: Sequence[int] = (0, 1), threshold: float = 0.5,
                 name: str | None = None) -> None:
        super().__init__(2, target_class_ids, name)
        self.threshold = threshold

    def classes(self, y_true: Tensor, y_pred: Tensor) -> tuple[Tensor, Tensor]:
        return y_true.reshape(-1).long(), (y_pred >= self.threshold).reshape(-1).long()


class OneHotIoU(IoU):
    """`IoU` for one-hot targets and per-class scores (the arg-max of both).

    Args:
        num_classes: The number of classes.
        target_class_ids: The classes whose IoU is averaged.
        name: The log key. Defaults to `"one_hot_io_u"`.
        ignore_class: A target class id left out. Defaults to `None`.
        sparse_y_pred: Whether predictions are class ids already. Defaults to `False`.
        axis: The class axis. Defaults to `-1`.
    """

    def __init__(self, num_classes: int, target_class_ids: Sequence[int], name: str | None = None,
                 ignore_class: int | None = None, sparse_y_pred: bool = False, axis: int = -1) -> None:
        super().__init__(num_classes, target_class_ids, name, ignore_class, False, sparse_y_pred, axis)


class OneHotMeanIoU(MeanIoU):
    """`MeanIoU` for one-hot targets and per-class scores (the arg-max of both).

    Args:
        num_classes: The number of classes.
        name: The log key. Defaults to `"one_hot_mean_io_u"`.
        ignore_class: A target class id left out. Defaults to `None`.
        sparse_y_pred: Whether predictions are class ids already. Defaults to `False`.
        axis: The class axis. Defaults to `-1`.
    """

    def __init__(self, num_classes: int, name: str | None = None, ignore_class: int | None = None,
                 sparse_y_pred: bool = False, axis: int = -1) -> None:
        super().__init__(num_classes, name, ignore_class, False, sparse_y_pred, axis)
