"""What a trained model gets wrong, from its predictions and the targets (tensors): the confusion matrix,
per-class precision/recall/F1, the highest-loss samples and calibration for classification; the residuals
for regression. Metrics come from torchmetrics (an optional extra); `Interpretation.plot` uses matplotlib."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch

from epochal._optional import require

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CLASSIFICATION = "classification"
REGRESSION = "regression"
#: The parts `include` may name, per task.
PARTS = {CLASSIFICATION: ("confusion_matrix", "per_class", "top_losses", "calibration"),
         REGRESSION: ("residuals", "top_losses")}
_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
_MAX_PLOTTED = 2000  # residual points kept for the plots: enough to see the shape, small enough for HTML


@dataclass(frozen=True)
class ClassMetrics:
    """One class's precision, recall, F1 (0 where undefined, as torchmetrics) and support (true samples)."""

    name: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class TopLoss:
    """A sample the model gets most wrong: its index in the data, its loss, predicted and true label or value."""

    index: int
    loss: float
    predicted: str
    true: str
    confidence: float | None = None


@dataclass(frozen=True)
class CalibrationBin:
    """Samples whose top-class confidence lies in `[low, high)`: how confident, and how often right."""

    low: float
    high: float
    count: int
    confidence: float
    accuracy: float


@dataclass(frozen=True)
class ResidualSummary:
    """Residuals `target - prediction`: their spread, the usual errors and R² (from torchmetrics)."""

    count: int
    mean: float
    std: float
    mae: float
    rmse: float
    r2: float
    max_abs: float
    quantiles: dict[str, float]


@dataclass(frozen=True)
class Interpretation:
    """What `interpret_classification` or `interpret_regression` found; `str()` gives the text report."""

    task: str
    samples: int
    loss_name: str
    top_losses: list[TopLoss]
    class_names: list[str] | None = None
    accuracy: float | None = None
    confusion_matrix: list[list[int]] | None = None
    per_class: list[ClassMetrics] | None = None
    ece: float | None = None
    calibration: list[CalibrationBin] | None = None
    residuals: ResidualSummary | None = None
    residual_points: list[tuple[float, float]] | None = None  # (prediction, residual), at most 2000

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists, dicts, numbers), ready for JSON."""
        return asdict(self)

    def __str__(self) -> str:
        lines = [f"Interpretation of {self.samples} samples ({self.task})"]
        if self.accuracy is not None:
            lines.append(f"Accuracy: {self.accuracy:.4f}")
        if self.per_class is not None:
            width = max(len("class"), *(len(row.name) for row in self.per_class))
            lines.append(f"{'class':<{width}}  precision  recall      f1  support")
            lines += [f"{row.name:<{width}}  {row.precision:9.4f}  {row.recall:6.4f}  {row.f1:6.4f}  {row.support:7d}"
                      for row in self.per_class]
        if self.confusion_matrix is not None:
            lines.append("Confusion matrix (rows: true class, columns: predicted):")
            lines += _matrix_lines(self.confusion_matrix, self.class_names or [])
        if self.ece is not None:
            lines.append(f"Expected calibration error: {self.ece:.4f} ({len(self.calibration or [])} bins; "
                         "0 means confidence matches accuracy)")
        if self.residuals is not None:
            r = self.residuals
            lines.append(f"Residuals (target - prediction): mean {r.mean:.4g}, std {r.std:.4g}, MAE {r.mae:.4g}, "
                         f"RMSE {r.rmse:.4g}, R² {r.r2:.4g}, largest |residual| {r.max_abs:.4g}")
            lines.append("Quantiles: " + ", ".join(f"{q} {v:.4g}" for q, v in r.quantiles.items()))
        if self.top_losses:
            lines.append(f"Highest {self.loss_name} (sample index: loss, predicted vs true):")
            lines += [f"  #{t.index}: {t.loss:.4g}, predicted {t.predicted}"
                      + (f" ({t.confidence:.0%})" if t.confidence is not None else "") + f" vs true {t.true}"
                      for t in self.top_losses]
        return "\n".join(lines)

    def plot(self) -> Figure:
        """Confusion matrix and reliability diagram, or residuals against predictions and their histogram."""
        from epochal.analysis.interpretation_plot import plot_interpretation

        return plot_interpretation(self)


def check_include(task: str, include: Sequence[str] | None, loss_name: str) -> tuple[str, ...]:
    """The parts to compute: all of the task's when `include` is None, else `include`, checked."""
    if include is None:
        return PARTS[task]
    if isinstance(include, str):
        include = [include]
    known = {part for parts in PARTS.values() for part in parts}
    for part in include:
        if part not in known:
            raise ValueError(f"`include` may hold {', '.join(sorted(known))}. Received: include={list(include)!r}")
        if part not in PARTS[task]:
            other = CLASSIFICATION if task == REGRESSION else REGRESSION
            raise ValueError(
                f"`include` asks for {part!r}, which needs a {other} model; this model is a {task} "
                f"(its loss is {loss_name}). For {task}, `include` may hold: {', '.join(PARTS[task])}.")
    return tuple(include)


def interpret_classification(
    probabilities: torch.Tensor, labels: torch.Tensor, *, losses: torch.Tensor | None = None,
    loss_name: str = "cross-entropy", class_names: Sequence[str] | None = None, top_k: int = 10, bins: int = 10,
    include: Sequence[str] | None = None,
) -> Interpretation:
    """Read a classifier's class probabilities `(N, C)` against integer labels `(N,)`.

    Args:
        probabilities: Each sample's class probabilities (rows sum to 1).
        labels: The true class of each sample.
        losses: Each sample's loss, to rank the worst samples. Defaults to `None`: the cross-entropy
            `-log p(true class)`.
        loss_name: What `losses` are, for the report. Defaults to `"cross-entropy"`.
        class_names: A name per class. Defaults to `None`: the class indices.
        top_k: How many highest-loss samples to list. Defaults to `10`.
        bins: Equal-width confidence bins of the reliability diagram and the ECE. Defaults to `10`.
        include: Parts to compute, of `PARTS["classification"]`. Defaults to `None`: all.

    Example:
        >>> p = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
        >>> result = interpret_classification(p, torch.tensor([0, 1, 1]), top_k=1)
        >>> result.confusion_matrix, result.top_losses[0].index
        ([[1, 0], [1, 1]], 2)
    """
    classification = require("torchmetrics.functional.classification")
    parts = check_include(CLASSIFICATION, include, loss_name)
    _check_positive("top_k", top_k)
    _check_positive("bins", bins)
    probabilities, labels = probabilities.detach().float().cpu(), labels.detach().long().cpu().reshape(-1)
    if probabilities.ndim != 2 or probabilities.shape[0] != labels.shape[0]:
        raise ValueError(f"`probabilities` must be (samples, classes) with one row per label. Received: shape "
                         f"{tuple(probabilities.shape)} for {labels.shape[0]} labels")
    count = probabilities.shape[1]
    names = [str(n) for n in class_names] if class_names is not None else [str(i) for i in range(count)]
    if len(names) != count:
        raise ValueError(f"`class_names` must name all {count} classes. Received: {len(names)} names")
    predicted = probabilities.argmax(dim=1)
    matrix = classification.multiclass_confusion_matrix(probabilities, labels, num_classes=count)
    result: dict[str, Any] = {"class_names": names, "accuracy": float((predicted == labels).float().mean())}
    if "confusion_matrix" in parts:
        result["confusion_matrix"] = matrix.tolist()
    if "per_class" in parts:
        scores = [getattr(classification, f"multiclass_{name}")(probabilities, labels, num_classes=count, average=None)
                  for name in ("precision", "recall", "f1_score")]
        support = matrix.sum(dim=1)
        result["per_class"] = [ClassMetrics(names[c], float(scores[0][c]), float(scores[1][c]), float(scores[2][c]),
                                            int(support[c])) for c in range(count)]
    if "calibration" in parts:
        result["ece"] = float(classification.multiclass_calibration_error(probabilities, labels, num_classes=count,
                                                                          n_bins=bins, norm="l1"))
        result["calibration"] = reliability_bins(probabilities, labels, bins)
    top: list[TopLoss] = []
    if "top_losses" in parts:
        if losses is None:
            losses = -probabilities.gather(1, labels.unsqueeze(1)).squeeze(1).clamp_min(1e-12).log()
        confidence = probabilities.max(dim=1).values
        top = [TopLoss(i, float(losses[i]), names[int(predicted[i])], names[int(labels[i])], float(confidence[i]))
               for i in _worst(losses, top_k)]
    return Interpretation(CLASSIFICATION, labels.shape[0], loss_name, top, **result)


def reliability_bins(probabilities: torch.Tensor, labels: torch.Tensor, bins: int) -> list[CalibrationBin]:
    """The reliability diagram: per confidence bin, the mean top-class confidence and the accuracy.

    The count-weighted mean of `|accuracy - confidence|` over the bins is the expected calibration error.
    """
    confidence, predicted = probabilities.max(dim=1)
    correct = (predicted == labels).float()
    # torchmetrics' binning: bin i holds confidences in (i/bins, (i+1)/bins]
    index = (torch.ceil(confidence * bins) - 1).clamp(0, bins - 1).long()
    rows = []
    for b in range(bins):
        chosen = index == b
        n = int(chosen.sum())
        rows.append(CalibrationBin(b / bins, (b + 1) / bins, n, float(confidence[chosen].mean()) if n else math.nan,
                                   float(correct[chosen].mean()) if n else math.nan))
    return rows


def interpret_regression(
    predictions: torch.Tensor, targets: torch.Tensor, *, losses: torch.Tensor | None = None,
    loss_name: str = "squared error", top_k: int = 10, include: Sequence[str] | None = None,
) -> Interpretation:
    """Read a regressor's predictions against the targets (same shape): residual summary and worst samples.

    Args:
        predictions: The model's outputs, `(N,)` or `(N, k)`.
        targets: The true values, shaped like `predictions`.
        losses: Each sample's loss, to rank the worst samples. Defaults to `None`: the mean squared residual.
        loss_name: What `losses` are, for the report. Defaults to `"squared error"`.
        top_k: How many highest-loss samples to list. Defaults to `10`.
        include: Parts to compute, of `PARTS["regression"]`. Defaults to `None`: all.

    Example:
        >>> result = interpret_regression(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.0, 2.5, 3.0]), top_k=1)
        >>> result.residuals.max_abs, result.top_losses[0].index
        (1.0, 2)
    """
    regression = require("torchmetrics.functional")
    parts = check_include(REGRESSION, include, loss_name)
    _check_positive("top_k", top_k)
    predictions, targets = predictions.detach().float().cpu(), targets.detach().float().cpu()
    if targets.ndim == 1 and predictions.ndim == 2 and predictions.shape[1] == 1:
        targets = targets.unsqueeze(1)
    if predictions.shape != targets.shape:
        raise ValueError(f"`targets` must have the shape of the predictions {tuple(predictions.shape)}. "
                         f"Received: {tuple(targets.shape)}")
    residual = targets - predictions
    per_sample = residual.reshape(residual.shape[0], -1)
    result: dict[str, Any] = {}
    if "residuals" in parts:
        flat = residual.reshape(-1)
        quantiles = torch.quantile(flat, torch.tensor(_QUANTILES))
        result["residuals"] = ResidualSummary(
            count=flat.numel(), mean=float(flat.mean()), std=float(flat.std(unbiased=False)),
            mae=float(regression.mean_absolute_error(predictions, targets)),
            rmse=float(regression.mean_squared_error(predictions, targets, squared=False)),
            r2=float(regression.r2_score(predictions.reshape(-1), targets.reshape(-1))) if flat.numel() > 1
            else math.nan,
            max_abs=float(flat.abs().max()), quantiles={f"{q:.0%}": float(v) for q, v in zip(_QUANTILES, quantiles)})
        step = max(flat.numel() // _MAX_PLOTTED, 1)
        result["residual_points"] = [(float(p), float(r)) for p, r in
                                     zip(predictions.reshape(-1)[::step], flat[::step])]
    top: list[TopLoss] = []
    if "top_losses" in parts:
        if losses is None:
            losses = per_sample.pow(2).mean(dim=1)
        top = [TopLoss(i, float(losses[i]), _value(predictions[i]), _value(targets[i])) for i in _worst(losses, top_k)]
    return Interpretation(REGRESSION, predictions.shape[0], loss_name, top, **result)


def _worst(losses: torch.Tensor, k: int) -> list[int]:
    """Indices of the `k` largest losses, largest first (NaN counts as largest: it is worth a look)."""
    values = torch.nan_to_num(losses.detach().float().cpu().reshape(-1), nan=math.inf)
    return values.topk(min(k, values.numel())).indices.tolist()


def _value(row: torch.Tensor) -> str:
    values = row.reshape(-1).tolist()
    return f"{values[0]:.4g}" if len(values) == 1 else "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


def _matrix_lines(matrix: list[list[int]], names: list[str]) -> list[str]:
    width = max([len(n) for n in names] + [len(str(v)) for row in matrix for v in row] + [1])
    header = " " * width + "  " + " ".join(f"{n:>{width}}" for n in names)
    return [header] + [f"{name:>{width}}  " + " ".join(f"{v:>{width}d}" for v in row)
                       for name, row in zip(names, matrix)]


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
