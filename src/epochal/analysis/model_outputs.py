"""From a model's compiled loss, outputs and targets to what `interpretation` reads: the task, class
probabilities and labels (or predictions and targets), and each sample's loss."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from epochal import losses as losses_module
from epochal.analysis import interpretation as interp

_MULTICLASS = (losses_module.SparseCategoricalCrossentropy, losses_module.CategoricalCrossentropy)
_REGRESSION = (losses_module.MeanSquaredError, losses_module.MeanAbsoluteError, losses_module.Huber,
               losses_module.LogCosh, losses_module.MeanAbsolutePercentageError,
               losses_module.MeanSquaredLogarithmicError, losses_module.Poisson)
_TORCH_MULTICLASS = (torch.nn.CrossEntropyLoss, torch.nn.NLLLoss)
_TORCH_BINARY = (torch.nn.BCEWithLogitsLoss, torch.nn.BCELoss)
_TORCH_REGRESSION = (torch.nn.MSELoss, torch.nn.L1Loss, torch.nn.SmoothL1Loss, torch.nn.HuberLoss)


def infer_task(loss: losses_module.Loss) -> str | None:
    """`"classification"` or `"regression"` as the loss implies, or None when it does not say."""
    fn = getattr(loss, "fn", None)  # a wrapped torch loss module or callable
    if isinstance(loss, (*_MULTICLASS, losses_module.BinaryCrossentropy)) or isinstance(fn, (*_TORCH_MULTICLASS,
                                                                                              *_TORCH_BINARY)):
        return interp.CLASSIFICATION
    if isinstance(loss, _REGRESSION) or isinstance(fn, _TORCH_REGRESSION):
        return interp.REGRESSION
    return None


def interpret_outputs(loss: losses_module.Loss, y_pred: Any, y_true: Any, *, task: str = "auto",
                      class_names: Sequence[str] | None = None, top_k: int = 10, bins: int = 10,
                      include: Sequence[str] | None = None) -> interp.Interpretation:
    """Interpret one output `y_pred` against `y_true` for a model compiled with `loss` (see `Model.interpret`)."""
    if task not in ("auto", interp.CLASSIFICATION, interp.REGRESSION):
        raise ValueError(f"`task` must be 'auto', 'classification' or 'regression'. Received: task={task!r}")
    if not isinstance(y_pred, torch.Tensor):
        raise ValueError("`interpret` reads models with one output (a tensor); this one returns "
                         f"{type(y_pred).__name__}. Call epochal.analysis.interpretation on the output you want.")
    resolved = infer_task(loss) if task == "auto" else task
    if resolved is None:
        raise ValueError(f"Cannot tell from the loss `{loss.name}` whether the model classifies or regresses: "
                         "pass task='classification' or task='regression'.")
    y_true = y_true.to(y_pred.device)
    per_sample = _per_sample_losses(loss, y_true, y_pred)
    if resolved == interp.REGRESSION:
        return interp.interpret_regression(y_pred, y_true.to(y_pred.dtype), losses=per_sample, loss_name=loss.name,
                                           top_k=top_k, include=include)
    interp.check_include(interp.CLASSIFICATION, include, loss.name)
    probabilities, labels = class_probabilities(loss, y_pred, y_true)
    return interp.interpret_classification(probabilities, labels, losses=per_sample, loss_name=loss.name,
                                           class_names=class_names, top_k=top_k, bins=bins, include=include)


def class_probabilities(loss: losses_module.Loss, y_pred: torch.Tensor,
                        y_true: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(probabilities (N, C), labels (N,))`: softmax or sigmoid for logits, two columns for a binary output.

    Logits are recognised from the loss (`from_logits=True`, torch's CrossEntropyLoss/BCEWithLogitsLoss);
    for any other loss, an output that is not a probability distribution is read as logits.
    """
    y_pred = y_pred.detach().float()
    binary = isinstance(loss, losses_module.BinaryCrossentropy) or isinstance(getattr(loss, "fn", None), _TORCH_BINARY)
    if binary or (y_pred.ndim == 1 or y_pred.shape[-1] == 1):
        if y_pred.ndim > 1 and y_pred.reshape(y_pred.shape[0], -1).shape[1] != 1:
            raise ValueError(f"`interpret` reads one binary output per sample; this output has shape "
                             f"{tuple(y_pred.shape)} (multi-label outputs are not supported).")
        p = y_pred.reshape(-1)
        if _logits(loss, p, binary=True):
            p = torch.sigmoid(p)
        return torch.stack([1 - p, p], dim=1), y_true.reshape(-1).round().long()
    if y_pred.ndim != 2:
        raise ValueError(f"`interpret` reads class scores of shape (samples, classes). Received: {tuple(y_pred.shape)}")
    probabilities = torch.softmax(y_pred, dim=1) if _logits(loss, y_pred, binary=False) else \
        y_pred / y_pred.sum(dim=1, keepdim=True)
    labels = y_true.argmax(dim=1) if y_true.shape == y_pred.shape else y_true.reshape(-1)
    return probabilities, labels.long()


def _logits(loss: losses_module.Loss, y_pred: torch.Tensor, *, binary: bool) -> bool:
    if isinstance(loss, (*_MULTICLASS, losses_module.BinaryCrossentropy)):
        return bool(loss.from_logits)  # type: ignore[attr-defined]
    fn = getattr(loss, "fn", None)
    if isinstance(fn, (torch.nn.CrossEntropyLoss, torch.nn.BCEWithLogitsLoss, torch.nn.NLLLoss)):
        return True  # NLLLoss takes log-probabilities, which a softmax turns back into probabilities
    if isinstance(fn, torch.nn.BCELoss):
        return False
    outside = bool((y_pred < 0).any() or (y_pred > 1).any())
    return outside or (not binary and not torch.allclose(y_pred.sum(dim=1), torch.ones(y_pred.shape[0]), atol=1e-3))


def _per_sample_losses(loss: losses_module.Loss, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor | None:
    """Each sample's compiled loss, or None when the loss gives one value for the whole batch."""
    with torch.no_grad():
        values = loss.call(loss.prepare_target(y_true, y_pred), y_pred)
    return values if values.ndim == 1 and values.shape[0] == y_pred.shape[0] else None
