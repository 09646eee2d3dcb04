"""Keras-semantics losses for PyTorch: per-sample values, `sum_over_batch_size` weighting, clear shape errors.

Every loss computes one value per sample (`call`), so sample and class weights and exact epoch means
work the Keras way: the batch loss is `sum(w_i * l_i) / N`. A `Loss` also adapts `y` to the model's
output once per batch (`prepare_target`, pure shape logic) and checks the first batch's output
(`check_output`), which is where "this output does not look like probabilities" is caught.

Example:
    >>> import torch
    >>> loss = get("mse")
    >>> float(loss(torch.tensor([1.0, 2.0]), torch.tensor([[1.5], [2.0]])))
    0.125
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "BinaryCrossentropy",
    "BinaryFocalCrossentropy",
    "CategoricalCrossentropy",
    "CategoricalFocalCrossentropy",
    "CategoricalHinge",
    "CosineSimilarity",
    "Hinge",
    "Huber",
    "KLDivergence",
    "LogCosh",
    "Loss",
    "MeanAbsoluteError",
    "MeanAbsolutePercentageError",
    "MeanSquaredError",
    "MeanSquaredLogarithmicError",
    "Poisson",
    "SparseCategoricalCrossentropy",
    "SquaredHinge",
    "binary_crossentropy",
    "binary_focal_crossentropy",
    "categorical_crossentropy",
    "categorical_focal_crossentropy",
    "categorical_hinge",
    "cosine_similarity",
    "get",
    "hinge",
    "huber",
    "kl_divergence",
    "log_cosh",
    "mean_absolute_error",
    "mean_absolute_percentage_error",
    "mean_squared_error",
    "mean_squared_logarithmic_error",
    "poisson",
    "sparse_categorical_crossentropy",
    "squared_hinge",
]

class TargetDomain(NamedTuple):
    """The values a loss's targets may hold, checked over all the data before training
    (`epochal.training.target_checks`): within `[low, high]`, whole numbers if `whole`, except `ignore`."""

    low: float
    high: float
    whole: bool
    ignore: int | None
    expected: str  # what the error says is expected, naming the loss


# Keras's `backend.epsilon()`: the clipping bound of probability losses and the floor of divisors.
_EPSILON = 1e-7
REDUCTIONS = ("sum_over_batch_size", "mean", "mean_with_sample_weight", "sum", "none", None)


class Loss:
    """Keras-semantics loss; subclasses implement `call`, returning one loss value per sample.

    Args:
        reduction: How a batch's per-sample values `l` (times their weights `w`) become the loss,
            as Keras: `"sum_over_batch_size"` or `"mean"` (`sum(w l) / N`), `"mean_with_sample_weight"`
            (`sum(w l) / sum(w)`), `"sum"` (Keras's sum over every value, one per position of the
            output without its last axis), or `"none"` / `None` (the weighted per-sample values;
            `fit` then averages them, as Keras does). Defaults to `"sum_over_batch_size"`.
        name: The loss's name. Defaults to the snake_case class name (`"mean_squared_error"`).
    """

    name: str

    def __init__(self, *, reduction: str | None = "sum_over_batch_size", name: str | None = None) -> None:
        if reduction not in REDUCTIONS:
            raise ValueError(f"`reduction` must be one of {list(REDUCTIONS)}. Received: reduction={reduction!r}")
        self.reduction = reduction
        self.name = name if name is not None else _snake_case(type(self).__name__)

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        """Per-sample losses, shape `(N,)`, for a target already passed through `prepare_target`."""
        raise NotImplementedError(f"{type(self).__name__} must implement `call(y_true, y_pred)`.")

    def prepare_target(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        """`y_true` shaped and typed like `y_pred` (a 1-D `y` for an `(N, 1)` output becomes `(N, 1)`)."""
        return _dense_target(y_true, y_pred, self.name)

    def check_output(self, y_true: Tensor, y_pred: Tensor) -> None:
        """Validate the first batch's output and labels (may sync with the host); no-op by default."""

    def target_domain(self, y_true: Tensor, y_pred: Tensor) -> TargetDomain | None:
        """What every target must hold for this output (`y_true`, `y_pred`: a first batch's); None: anything."""
        return None

    def __call__(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        """The batch loss, by default `sum(sample_weight * per-sample loss) / N` (see `reduction`)."""
        values = self._per_sample(y_true, y_pred)
        if values.ndim == 0:
            if sample_weight is not None:
                raise ValueError(
                    f"The loss `{self.name}` returned a scalar; a loss that returns a scalar cannot be "
                    "weighted by sample or class weight; return one value per sample."
                )
            return values
        if sample_weight is None:
            return _reduce(values, None, self.reduction, y_pred)
        weights = sample_weight.to(device=values.device, dtype=values.dtype)
        if weights.ndim == 2 and weights.shape[-1] == 1:
            weights = weights.squeeze(-1)
        if weights.shape != values.shape:
            raise ValueError(
                f"`sample_weight` has shape {_fmt(weights.shape)} but the loss has one value per sample, "
                f"shape {_fmt(values.shape)}; pass one weight per sample."
            )
        return _reduce(values * weights, weights, self.reduction, y_pred)

    def _per_sample(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        y_pred = _compute_precision(y_pred)
        return self.call(self.prepare_target(y_true, y_pred), y_pred)


# --- Regression ------------------------------------------------------------------------------------------


class MeanSquaredError(Loss):
    """Mean of squared errors, `mean((y_true - y_pred) ** 2)` over each sample's values.

    Args:
        reduction: See `Loss`. Defaults to `"sum_over_batch_size"`.
        name: The loss's name. Defaults to `"mean_squared_error"`.
    """

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        return _mean_per_sample(F.mse_loss(y_pred, y_true, reduction="none"))


class MeanAbsoluteError(Loss):
    """Mean of absolute errors, `mean(abs(y_true - y_pred))` over each sample's values.

    Args:
        reduction: See `Loss`. Defaults to `"sum_over_batch_size"`.
        name: The loss's name. Defaults to `"mean_absolute_error"`.
    """

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        return _mean_per_sample(F.l1_loss(y_pred, y_true, reduction="none"))


class MeanAbsolutePercentageError(Loss):
    """`100 * mean(abs((y_true - y_pred) / max(abs(y_true), 1e-7)))`, as Keras guards the division.

    Args:
        reduction: See `Loss`. Defaults to `"sum_over_batch_size"`.
        name: The loss's name. Defaults to `"mean_absolute_percentage_error"`.
    """

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        ratio = (y_true - y_pred) / y_true.abs().clamp_min(_EPSILON)
        return 100.0 * _mean_per_sample(ratio.abs())


class MeanSquaredLogarithmicError(Loss):
    """`mean((log(1 + y_pred) - log(1 + y_true)) ** 2)`, values floored at 1e-7 as Keras does.

    Args:
        reduction: See `Loss`. Defaults to `"sum_over_batch_size"`.
        name: The loss's name. Defaults to `"mean_squared_logarithmic_error"`.
    """

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        diff = torch.log1p(y_pred.clamp_min(_EPSILON)) - torch.log1p(y_true.clamp_min(_EPSILON))
        return _mean_per_sample(diff.square())


class Huber(Loss):
    """Huber loss: quadratic for errors up to `delta`, linear beyond; robust to outliers.

    Args:
        delta: Where the loss turns from quadratic to linear. Defaults to `1.0`.
        reduction: See `Loss`. Defaults to `"sum_over_batch_size"`.
        name: The loss's name. Defaults to `"huber_loss"`.
    """

    def __init__(self, *, delta: float = 1.0, reduction: str | None = "sum_over_batch_size",
                 name: str = "huber_loss") -> None:
        super().__init__(reduction=reduction, name=name)
        self.delta = delta

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        return _mean_per_sample(F.huber_loss(y_pred, y_true, reduction="none", delta=self.delta))


class LogCosh(Loss):
    """`mean(log(cosh(y_pred - y_true)))`: like MSE for small errors, like MAE for large ones.

    Args:
        reduction: See `Loss`. Defaults to `"sum_over_batch_size"`.
        name: The loss's name. Defaults to `"log_cosh"`.
    """

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        error = y_pred - y_true
        # The softplus form stays finite where cosh would overflow.
        return _mean_per_sample(error + F.softplus(-2.0 * error) - math.log(2.0))


class CosineSimilarity(Loss):
    """Negative cosine similarity along `axis` (Keras's sign: -1 is a perfect match, so lower is better).

    Args:
        axis: The features axis the similarity is computed along. Defaults to `-1`.
        reduction: See `Loss`. Defaults to `"sum_over_batch_size"`.
        name: The loss's name. Defaults to `"cosine_similarity"`.
    """

    def __init__(self, *, axis: int = -1, reduction: str | None = "sum_over_batch_size",
                 name: str = "cosine_similarity") -> None:
        super().__init__(reduction=reduction, name=name)
        self.axis = axis

    def prepare_target(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        _require_feature_axis(y_pred, self.name, "(batch, ..., features)")
        return super().prepare_target(y_true, y_pred)

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        y_true = F.normalize(y_true, dim=self.axis, eps=_EPSILON)
        y_pred = F.normalize(y_pred, dim=self.axis, eps=_EPSILON)
        return _mean_per_sample(-(y_true * y_pred).sum(dim=self.axis))


# --- Probabilistic ---------------------------------------------------------------------------------------


class BinaryCrossentropy(Loss):
    """Binary cross-entropy for 0/1 targets, one per output unit, averaged over the units.

    Probabilities are clipped to [1e-7, 1 - 1e-7] as Keras does; with `from_logits=True` the sigmoid is
    folded into a numerically stable formula.

    Args:
        from_logits: Whether the output is logits (no sigmoid) rather than probabilities.
            Defaults to `False`.
        label_smoothing: In [0, 1]; targets are squeezed towards 0.5: `y * (1 - s) + 0.5 * s`.
            Defaults to `0.0`.
        reduction: See `Loss`. Defaults to `"sum_over_batch_size"`.
        name: The loss's name. Defaults to `"binary_crossentropy"`.
    """

    def __init__(
        self, *, from_logits: bool = False, label_smoothing: float = 0.0,
        reduction: str | None = "sum_over_batch_size", name: str = "binary_crossentropy"
    ) -> None:
        super().__init__(reduction=reduction, name=name)
        self.from_logits = from_logits
        self.label_smoothing = label_smoothing

    def prepare_target(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        return _dense_target(y_true, y_pred, self.name, " (one 0/1 target per output unit)")

    def check_output(self, y_true: Tensor, y_pred: Tensor) -> None:
        if not self.from_logits:
            _check_probabilities(y_pred, self, upper_bound=True)

    def target_domain(self, y_true: Tensor, y_pred: Tensor) -> TargetDomain | None:
        return TargetDomain(0.0, 1.0, False, None, f"`{self.name}` expects targets in [0, 1]")

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        if self.label_smoothing:
            y_true = y_true * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        if self.from_logits:
            return _mean_per_sample(F.binary_cross_entropy_with_logits(y_pred, y_true, reduction="none"))
        # Written out rather than F.binary_cross_entropy, which refuses to run under autocast;
        # after clipping both give the same values.
        p = y_pred.clamp(_EPSILON, 1.0 - _EPSILON)
        return _mean_per_sample(-(y_true * torch.log(p) + (1.0 - y_true) * torch.log(1.0 - p)))


class CategoricalCrossentropy(Loss):
    """Cross-entropy between one-hot (or soft) targets and a class distribution along `axis`.

    Probabilities are first divided by their sum along `axis`, then clipped to [1e-7, 1 - 1e-7], as
    Keras does; with `from_logits=True` a log-softmax is used instead.

    Args:
        from_logits: Whether the output is logits (no softmax) rather than probabilities.
            Defaults to `False`.
        label_smoothing: In [0, 1]; targets become `y * (1 - s) + s / num_classes`. Defaults to `0.0`.
        axis: The class axis. Defaults to `-1`.
        reduction: See `Loss`. Defaults to `"sum_over_batch_size"`.
        name: The loss's name. Defaults to `"categorical_crossentropy"`.
    """

    def __init__(
        self,
        *,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "categorical_crossentropy",
    ) -> None:
        super().__init__(reduction=reduction, name=name)
        self.from_logits = from_logits
        self.label_smoothing = label_smoothing
        self.axis = axis

    def prepare_target(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        _require_feature_axis(y_pred, self.name, "(batch, ..., classes)")
        if y_true.shape != y_pred.shape and _looks_sparse(y_true, y_pred):
            raise ValueError(
                f"{_shape_mismatch(y_true, y_pred)} `{self.name}` expects `y` of the output's shape "
                "(one-hot). For integer class labels use `sparse_categorical_crossentropy`."
            )
        return _dense_target(y_true, y_pred, self.name, " (one-hot)")

    def check_output(self, y_true: Tensor, y_pred: Tensor) -> None:
        if not self.from_logits:
            _check_probabilities(y_pred, self, upper_bound=False)

    def target_domain(self, y_true: Tensor, y_pred: Tensor) -> TargetDomain | None:
        return TargetDomain(0.0, 1.0, False, None, f"`{self.name}` expects one-hot or probability targets in [0, 1]")

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        if self.label_smoothing:
            num_classes = y_true.shape[self.axis]
            y_true = y_true * (1.0 - self.label_smoothing) + self.label_smoothing / num_classes
        log_p = _log_probabilities(y_pred, self.axis, self.from_logits)
        return _mean_per_sample(-(y_true * log_p).sum(dim=self.axis))


class BinaryFocalCrossentropy(BinaryCrossentropy):
    """Binary cross-entropy scaled by `(1 - p_t) ** gamma`, so easy examples weigh less (Keras's formula).

    `p_t` is the probability given to the true label; with `apply_class_balancing`, positives are
    weighted by `alpha` and negatives by `1 - alpha` (Lin et al., 2017).

    Args:
        apply_class_balancing: Weigh positives by `alpha`, negatives by `1 - alpha`. Defaults to `False`.
        alpha: The positive class's weight under class balancing. Defaults to `0.25`.
        gamma: The focusing exponent; 0 gives plain binary cross-entropy. Defaults to `2.0`.
        from_logits: Whether the output is logits (a sigmoid is applied first). Defaults to `False`.
        label_smoothing: In [0, 1]; targets become `y * (1 - s) + 0.5 * s`. Defaults to `0.0`.
        axis: Keras's reduction axis; a per-sample mean over every axis is the same whichever it is.
            Defaults to `-1`.
        reduction: See `Loss`. Defaults to `"sum_over_batch_size"`.
        name: The loss's name. Defaults to `"binary_focal_crossentropy"`.
    """

    def __init__(self, *, apply_class_balancing: bool = False, alpha: float = 0.25, gamma: float = 2.0,
                 from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction: str | None = "sum_over_batch_size", name: str = "binary_focal_crossentropy") -> None:
        super().__init__(from_logits=from_logits, label_smoothing=label_smoothing, reduction=reduction, name=name)
        self.apply_class_balancing, self.alpha, self.gamma, self.axis = apply_class_balancing, alpha, gamma, axis

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        if self.label_smoothing:
            y_true = y_true * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        p = torch.sigmoid(y_pred) if self.from_logits else y_pred
        clipped = p.clamp(_EPSILON, 1.0 - _EPSILON)
        bce = -(y_true * torch.log(clipped) + (1.0 - y_true) * torch.log(1.0 - clipped))
        p_t = y_true * p + (1.0 - y_true) * (1.0 - p)
        focal = (1.0 - p_t).pow(self.gamma) * bce
        if self.apply_class_balancing:
            focal = (y_true * self.alpha + (1.0 - y_true) * (1.0 - self.alpha)) * focal
        return _mean_per_sample(focal)


class CategoricalFocalCrossentropy(CategoricalCrossentropy):
    """Categorical cross-entropy scaled by `alpha * (1 - p) ** gamma` per class (Keras's formula).

    Probabilities are normalised and clipped as in `CategoricalCrossentropy`.

    Args:
        alpha: The weight of every class's term. Defaults to `0.25`.
        gamma: The focusing exponent; 0 gives `alpha` times cross-entropy. Defaults to `2.0`.
        from_logits: Whether the output is logits (a softmax is applied first). Defaults to `False`.
        label_smoothing: In [0, 1]; targets become `y * (1 - s) + s / num_classes`. Defaults to `0.0`.
        axis: The class axis. Defaults to `-1`.
        reduction: See `Loss`. Defaults to `"sum_over_batch_size"`.
        name: The loss's name. Defaults to `"categorical_focal_crossentropy"`.
    """

    def __init__(self, *, alpha: float = 0.25, gamma: float = 2.0, from_logits: bool = False,
                 label_smoothing: float = 0.0, axis: int = -1, reduction: str | None = "sum_over_batch_size",
                 name: str = "categorical_focal_crossentropy") -> None:
        super().__init__(from_logits=from_logits, label_smoothing=label_smoothing, axis=axis, reduction=reduction,
                         name=name)
        self.alpha, self.gamma = alpha, gamma

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        if self.label_smoothing:
            y_true = y_true * (1.0 - self.label_smoothing) + self.label_smoothing / y_true.shape[self.axis]
        p = F.softmax(y_pred, dim=self.axis) if self.from_logits else y_pred
        p = (p / p.sum(dim=self.axis, keepdim=True)).clamp(_EPSILON, 1.0 - _EPSILON)
        focal = self.alpha * (1.0 - p).pow(self.gamma) * -(y_true * torch.log(p))
        return _mean_per_sample(focal.sum(dim=self.axis))


class SparseCategoricalCrossentropy(Loss):
    """Cross-entropy for integer labels, shaped `(N, ...)` or `(N, ..., 1)`, against classes on the last axis.

    Probabilities are normalised and clipped exactly as in `CategoricalCrossentropy`. With
    `ignore_class`, positions holding that label add nothing and the batch loss is the mean over the
    remaining positions (Keras's masking); each sample then carries its share of that mean, so the
    per-sample values depend on the batch they are in.

    Args:
        from_logits: Whether the output is logits (no softmax) rather than probabilities.
            Defaults to `False`.
        ignore_class: A label to leave out of the loss (e.g. a padding or "void" class). Defaults to `None`.
        reduction: See `Loss`. Defaults to `"sum_over_batch_size"`.
        name: The loss's name. Defaults to `"sparse_categorical_crossentropy"`.
    """

    def __init__(
        self,
        *,
        from_logits: bool = False,
        ignore_class: int | None = None,
        reduction: str | None = "sum_over_batch_size",
        name: str = "sparse_categorical_crossentropy",
    ) -> None:
        super().__init__(reduction=reduction, name=name)
        self.from_logits = from_logits
        self.ignore_class = ignore_class

    def prepare_target(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        _require_feature_axis(y_pred, self.name, "(batch, ..., classes)")
        labels_shape = y_pred.shape[:-1]
        if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
            y_true = y_true.squeeze(-1)
        if y_true.shape != labels_shape:
            hint = " For one-hot `y` use `categorical_crossentropy`." if y_true.shape == y_pred.shape else ""
            raise ValueError(
                f"{_shape_mismatch(y_true, y_pred)} `{self.name}` expects integer class indices of shape "
                f"{_fmt(labels_shape)} or {_fmt((*labels_shape, 1))}.{hint}"
            )
        return y_true.long()

    def check_output(self, y_true: Tensor, y_pred: Tensor) -> None:
        if not self.from_logits:
            _check_probabilities(y_pred, self, upper_bound=False)
        labels = self.prepare_target(y_true, y_pred)
        _check_label_range(labels, y_pred, y_pred.shape[-1], self.name, ignore=self.ignore_class)

    def target_domain(self, y_true: Tensor, y_pred: Tensor) -> TargetDomain | None:
        return _class_indices(y_pred.shape[-1], self.name, self.ignore_class)

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        log_p = _log_probabilities(y_pred, -1, self.from_logits)
        if self.ignore_class is None:
            return _mean_per_sample(-log_p.gather(-1, y_true.unsqueeze(-1)).squeeze(-1))
        valid = y_true != self.ignore_class
        # An ignored label may be out of range (-1, 255...): gather at 0, then zero it out.
        safe = torch.where(valid, y_true, torch.zeros_like(y_true))
        nll = torch.where(valid, -log_p.gather(-1, safe.unsqueeze(-1)).squeeze(-1), 0.0)
        per_sample = nll.reshape(nll.shape[0], -1).sum(dim=1)
        # Keras divides the batch's sum by the number of valid positions (0 when none are valid);
        # scaling by N here makes the plain per-sample mean equal exactly that.
        n_valid = valid.sum()
        return torch.where(n_valid > 0, per_sample * nll.shape[0] / n_valid.clamp_min(1), 0.0)


class KLDivergence(Loss):
    """KL divergence `sum(y_true * log(y_true / y_pred))` over the last axis, both clipped to [1e-7, 1].

    Args:
        reduction: See `Loss`. Defaults to `"sum_over_batch_size"`.
        name: The loss's name. Defaults to `"kl_divergence"`.
    """

    def prepare_target(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        _require_feature_axis(y_pred, self.name, "(batch, ..., classes)")
        return super().prepare_target(y_true, y_pred)

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        y_true = y_true.clamp(_EPSILON, 1.0)
        y_pred = y_pred.clamp(_EPSILON, 1.0)
        return _mean_per_sample((y_true * torch.log(y_true / y_pred)).sum(dim=-1))


class Poisson(Loss):
    """Poisson loss `mean(y_pred - y_true * log(y_pred + 1e-7))`, for count targets.

    Args:
        reduction: See `Loss`. Defaults to `"sum_over_batch_size"`.
        name: The loss's name. Defaults to `"poisson"`.
    """

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        return _mean_per_sample(y_pred - y_true * torch.log(y_pred + _EPSILON))


# --- Hinge -----------------------------------------------------------------------------------------------


class Hinge(Loss):
    """Hinge loss `mean(max(1 - y_true * y_pred, 0))` for -1/1 targets (0/1 targets are mapped to -1/1).

    Args:
        reduction: See `Loss`. Defaults to `"sum_over_batch_size"`.
        name: The loss's name. Defaults to `"hinge"`.
    """

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        return _mean_per_sample((1.0 - _signed_labels(y_true) * y_pred).clamp_min(0.0))


class SquaredHinge(Loss):
    """Squared hinge loss `mean(max(1 - y_true * y_pred, 0) ** 2)`; 0/1 targets are mapped to -1/1.

    Args:
        reduction: See `Loss`. Defaults to `"sum_over_batch_size"`.
        name: The loss's name. Defaults to `"squared_hinge"`.
    """

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        return _mean_per_sample((1.0 - _signed_labels(y_true) * y_pred).clamp_min(0.0).square())


class CategoricalHinge(Loss):
    """`max(max((1 - y_true) * y_pred) - sum(y_true * y_pred) + 1, 0)` on the last axis, one-hot targets.

    Args:
        reduction: See `Loss`. Defaults to `"sum_over_batch_size"`.
        name: The loss's name. Defaults to `"categorical_hinge"`.
    """

    def prepare_target(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        _require_feature_axis(y_pred, self.name, "(batch, ..., classes)")
        return _dense_target(y_true, y_pred, self.name, " (one-hot)")

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        positive = (y_true * y_pred).sum(dim=-1)
        negative = ((1.0 - y_true) * y_pred).amax(dim=-1)
        return _mean_per_sample((negative - positive + 1.0).clamp_min(0.0))


# --- Wrappers for plain callables and torch loss modules ---------------------------------------------------


class _FunctionLoss(Loss):
    """A callable `(y_true, y_pred) -> Tensor` as a `Loss`; a 0-d result is used as the batch loss as is."""

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor], *, name: str) -> None:
        super().__init__(name=name)
        self.fn = fn

    def prepare_target(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        # The function owns its shape rules (it may take class indices), so only the one unambiguous
        # fix is made: a 1-D `y` for an `(N, 1)` output, which would otherwise broadcast to (N, N).
        if y_true.ndim == 1 and y_pred.ndim == 2 and y_pred.shape[-1] == 1:
            y_true = y_true.unsqueeze(-1)
        return y_true.to(y_pred.dtype) if y_true.is_floating_point() else y_true

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        values = self._evaluate(y_true, y_pred)
        if not isinstance(values, Tensor):
            raise TypeError(f"The loss `{self.name}` must return a tensor. Received: {type(values).__name__}")
        if values.ndim == 0:
            return values
        if values.shape[0] != y_pred.shape[0]:
            raise ValueError(
                f"The loss `{self.name}` returned shape {_fmt(values.shape)} for a batch of "
                f"{y_pred.shape[0]} samples; return one value per sample (shape ({y_pred.shape[0]}, ...)) "
                "or a scalar."
            )
        return _mean_per_sample(values)

    def _evaluate(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        return self.fn(y_true, y_pred)


class _TorchModuleLoss(_FunctionLoss):
    """A torch loss module, called torch-style as `module(y_pred, y_true)` with `reduction="none"`."""

    # Losses whose target is class indices laid out like the input without its class axis (dim 1).
    _SPARSE_TARGET_LOSSES = (nn.CrossEntropyLoss, nn.NLLLoss)

    def __init__(self, module: nn.Module) -> None:
        if hasattr(module, "reduction"):
            # A shallow copy shares parameters and buffers (e.g. class weights) with the user's module.
            module = copy.copy(module)
            module.reduction = "none"  # type: ignore[assignment]  # typeshed types Module attrs as tensors
        super().__init__(module, name=_snake_case(type(module).__name__))

    def prepare_target(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        if not isinstance(self.fn, self._SPARSE_TARGET_LOSSES) or y_true.shape == y_pred.shape:
            return super().prepare_target(y_true, y_pred)
        labels_shape = (y_pred.shape[0], *y_pred.shape[2:])
        if y_true.ndim == len(labels_shape) + 1 and y_true.shape[-1] == 1:
            y_true = y_true.squeeze(-1)
        if y_true.shape != labels_shape:
            raise ValueError(
                f"{_shape_mismatch(y_true, y_pred)} `{self.name}` expects class indices of shape "
                f"{_fmt(labels_shape)} or class probabilities of the output's shape."
            )
        return y_true.long()

    def check_output(self, y_true: Tensor, y_pred: Tensor) -> None:
        labels = self.prepare_target(y_true, y_pred)
        if isinstance(self.fn, self._SPARSE_TARGET_LOSSES) and not labels.is_floating_point():
            # An out-of-range index is a device-side assert on CUDA; say what is wrong on the host instead.
            _check_label_range(labels, y_pred, y_pred.shape[1], self.name, ignore=self.fn.ignore_index)

    def target_domain(self, y_true: Tensor, y_pred: Tensor) -> TargetDomain | None:
        if not isinstance(self.fn, self._SPARSE_TARGET_LOSSES) or self.prepare_target(y_true, y_pred).is_floating_point():
            return None
        return _class_indices(y_pred.shape[1], self.name, self.fn.ignore_index)

    def _evaluate(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        return self.fn(y_pred, y_true)


# --- Function aliases: per-sample values, shape (N,) -------------------------------------------------------


def mean_squared_error(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """Per-sample mean squared error, shape `(N,)`."""
    return MeanSquaredError()._per_sample(y_true, y_pred)


def mean_absolute_error(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """Per-sample mean absolute error, shape `(N,)`."""
    return MeanAbsoluteError()._per_sample(y_true, y_pred)


def mean_absolute_percentage_error(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """Per-sample mean absolute percentage error, shape `(N,)`."""
    return MeanAbsolutePercentageError()._per_sample(y_true, y_pred)


def mean_squared_logarithmic_error(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """Per-sample mean squared logarithmic error, shape `(N,)`."""
    return MeanSquaredLogarithmicError()._per_sample(y_true, y_pred)


def huber(y_true: Tensor, y_pred: Tensor, delta: float = 1.0) -> Tensor:
    """Per-sample Huber loss, shape `(N,)`."""
    return Huber(delta=delta)._per_sample(y_true, y_pred)


def log_cosh(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """Per-sample log-cosh loss, shape `(N,)`."""
    return LogCosh()._per_sample(y_true, y_pred)


def cosine_similarity(y_true: Tensor, y_pred: Tensor, axis: int = -1) -> Tensor:
    """Per-sample negative cosine similarity, shape `(N,)`."""
    return CosineSimilarity(axis=axis)._per_sample(y_true, y_pred)


def binary_crossentropy(
    y_true: Tensor, y_pred: Tensor, from_logits: bool = False, label_smoothing: float = 0.0
) -> Tensor:
    """Per-sample binary cross-entropy, shape `(N,)`."""
    loss = BinaryCrossentropy(from_logits=from_logits, label_smoothing=label_smoothing)
    return loss._per_sample(y_true, y_pred)


def categorical_crossentropy(
    y_true: Tensor, y_pred: Tensor, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1
) -> Tensor:
    """Per-sample categorical cross-entropy, shape `(N,)`."""
    loss = CategoricalCrossentropy(from_logits=from_logits, label_smoothing=label_smoothing, axis=axis)
    return loss._per_sample(y_true, y_pred)


def binary_focal_crossentropy(
    y_true: Tensor, y_pred: Tensor, apply_class_balancing: bool = False, alpha: float = 0.25, gamma: float = 2.0,
    from_logits: bool = False, label_smoothing: float = 0.0
) -> Tensor:
    """Per-sample binary focal cross-entropy, shape `(N,)`."""
    loss = BinaryFocalCrossentropy(apply_class_balancing=apply_class_balancing, alpha=alpha, gamma=gamma,
                                   from_logits=from_logits, label_smoothing=label_smoothing)
    return loss._per_sample(y_true, y_pred)


def categorical_focal_crossentropy(
    y_true: Tensor, y_pred: Tensor, alpha: float = 0.25, gamma: float = 2.0, from_logits: bool = False,
    label_smoothing: float = 0.0, axis: int = -1
) -> Tensor:
    """Per-sample categorical focal cross-entropy, shape `(N,)`."""
    loss = CategoricalFocalCrossentropy(alpha=alpha, gamma=gamma, from_logits=from_logits,
                                        label_smoothing=label_smoothing, axis=axis)
    return loss._per_sample(y_true, y_pred)


def sparse_categorical_crossentropy(
    y_true: Tensor, y_pred: Tensor, from_logits: bool = False, ignore_class: int | None = None
) -> Tensor:
    """Per-sample sparse categorical cross-entropy, shape `(N,)`."""
    loss = SparseCategoricalCrossentropy(from_logits=from_logits, ignore_class=ignore_class)
    return loss._per_sample(y_true, y_pred)


def hinge(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """Per-sample hinge loss, shape `(N,)`."""
    return Hinge()._per_sample(y_true, y_pred)


def squared_hinge(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """Per-sample squared hinge loss, shape `(N,)`."""
    return SquaredHinge()._per_sample(y_true, y_pred)


def categorical_hinge(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """Per-sample categorical hinge loss, shape `(N,)`."""
    return CategoricalHinge()._per_sample(y_true, y_pred)


def kl_divergence(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """Per-sample Kullback-Leibler divergence, shape `(N,)`."""
    return KLDivergence()._per_sample(y_true, y_pred)


def poisson(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """Per-sample Poisson loss, shape `(N,)`."""
    return Poisson()._per_sample(y_true, y_pred)


# --- Lookup ----------------------------------------------------------------------------------------------

_KERAS_NAMES: dict[str, type[Loss]] = {
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError,
    "mae": MeanAbsoluteError,
    "mean_absolute_percentage_error": MeanAbsolutePercentageError,
    "mape": MeanAbsolutePercentageError,
    "mean_squared_logarithmic_error": MeanSquaredLogarithmicError,
    "msle": MeanSquaredLogarithmicError,
    "huber": Huber,
    "huber_loss": Huber,
    "log_cosh": LogCosh,
    "logcosh": LogCosh,
    "cosine_similarity": CosineSimilarity,
    "binary_crossentropy": BinaryCrossentropy,
    "bce": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "binary_focal_crossentropy": BinaryFocalCrossentropy,
    "categorical_focal_crossentropy": CategoricalFocalCrossentropy,
    "hinge": Hinge,
    "squared_hinge": SquaredHinge,
    "categorical_hinge": CategoricalHinge,
    "kl_divergence": KLDivergence,
    "kld": KLDivergence,
    "kullback_leibler_divergence": KLDivergence,
    "poisson": Poisson,
}
# Keras also takes class names as strings ("MeanSquaredError"); lookups are case-insensitive.
_BY_NAME = {**_KERAS_NAMES, **{cls.__name__.lower(): cls for cls in _KERAS_NAMES.values()}}


def get(identifier: str | Loss | type[Loss] | nn.Module | Callable[[Tensor, Tensor], Tensor]) -> Loss:
    """The `Loss` for a Keras name, a `Loss` (instance or class), a torch loss module or a callable.

    Args:
        identifier: A Keras loss name such as `"mse"` or `"SparseCategoricalCrossentropy"`
            (case-insensitive); a `Loss` instance (returned as is) or subclass (instantiated); a torch
            loss module such as `nn.CrossEntropyLoss()` (called as `module(y_pred, y_true)`); or a
            callable `(y_true, y_pred) -> Tensor` returning one value per sample or a scalar.

    Example:
        >>> get("MSE").name
        'mean_squared_error'
        >>> get(torch.nn.CrossEntropyLoss()).name
        'cross_entropy_loss'
    """
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is None:
            known = ", ".join(repr(name) for name in _KERAS_NAMES)
            raise ValueError(
                f"Unknown loss: {identifier!r}. Known losses: {known} (or a class name such as "
                "'MeanSquaredError', any case)."
            )
        return cls()
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if isinstance(identifier, type) and issubclass(identifier, nn.Module):
        return _TorchModuleLoss(identifier())
    if isinstance(identifier, nn.Module):
        return _TorchModuleLoss(identifier)
    if callable(identifier) and not isinstance(identifier, type):
        name = getattr(identifier, "__name__", None) or _snake_case(type(identifier).__name__)
        return _FunctionLoss(identifier, name=name)
    raise TypeError(
        "`loss` must be a Keras loss name, an `epochal.losses.Loss`, a torch loss module or a callable "
        f"(y_true, y_pred) -> Tensor. Received: loss={identifier!r} of type {type(identifier).__name__}"
    )


# --- Helpers ---------------------------------------------------------------------------------------------


def _reduce(values: Tensor, weights: Tensor | None, reduction: str | None, y_pred: Tensor) -> Tensor:
    """A batch's (weighted) per-sample losses reduced as Keras's `reduction` says."""
    if reduction in (None, "none"):
        return values
    if reduction == "sum":
        # Keras sums one value per position of the output without its last axis; ours are their means.
        return values.sum() * (y_pred[0, ..., 0].numel() if y_pred.ndim > 1 else 1)
    if reduction == "mean_with_sample_weight" and weights is not None:
        total = weights.sum()
        return torch.where(total == 0, torch.zeros_like(total), values.sum() / torch.where(total == 0, 1.0, total))
    return values.mean()


def _mean_per_sample(values: Tensor) -> Tensor:
    """Mean over every non-batch axis, so the batch mean equals Keras's `sum_over_batch_size`."""
    if values.ndim <= 1:
        return values
    return values.reshape(values.shape[0], -1).mean(dim=1)


def _compute_precision(y_pred: Tensor) -> Tensor:
    # Keras computes losses in float32 (its floatx) whatever the output's dtype; in half precision
    # 1 - 1e-7 rounds to 1 and the clipped log would be -inf.
    if y_pred.is_floating_point() and y_pred.element_size() >= 4:
        return y_pred
    return y_pred.float()


def _dense_target(y_true: Tensor, y_pred: Tensor, name: str, expectation: str = "") -> Tensor:
    """`y_true` of exactly `y_pred`'s shape and dtype; `(N,)` <-> `(N, 1)` is the only reshaping allowed."""
    if y_true.shape != y_pred.shape:
        if y_true.ndim + 1 == y_pred.ndim and y_pred.shape[-1] == 1 and y_true.shape == y_pred.shape[:-1]:
            y_true = y_true.unsqueeze(-1)
        elif y_true.ndim == y_pred.ndim + 1 and y_true.shape[-1] == 1 and y_true.shape[:-1] == y_pred.shape:
            y_true = y_true.squeeze(-1)
        else:
            raise ValueError(
                f"{_shape_mismatch(y_true, y_pred)} `{name}` expects `y` of the output's shape{expectation}."
            )
    return y_true.to(y_pred.dtype)


def _require_feature_axis(y_pred: Tensor, name: str, expected: str) -> None:
    if y_pred.ndim < 2:
        raise ValueError(
            f"The model's output has shape {_fmt(y_pred.shape)} but `{name}` expects an output of shape "
            f"{expected}."
        )


def _looks_sparse(y_true: Tensor, y_pred: Tensor) -> bool:
    """Whether `y_true` is shaped like class indices for `y_pred`: `(N, ...)` or `(N, ..., 1)`."""
    labels_shape = y_pred.shape[:-1]
    return y_pred.shape[-1] > 1 and (y_true.shape == labels_shape or y_true.shape == (*labels_shape, 1))


def _log_probabilities(y_pred: Tensor, axis: int, from_logits: bool) -> Tensor:
    if from_logits:
        return F.log_softmax(y_pred, dim=axis)
    p = y_pred / y_pred.sum(dim=axis, keepdim=True)
    return torch.log(p.clamp(_EPSILON, 1.0 - _EPSILON))


def _signed_labels(y_true: Tensor) -> Tensor:
    """0/1 labels mapped to -1/1, as Keras's hinge losses do when every label is 0 or 1."""
    is_binary = ((y_true == 0) | (y_true == 1)).all()
    return torch.where(is_binary, 2.0 * y_true - 1.0, y_true)


def _check_probabilities(y_pred: Tensor, loss: Loss, *, upper_bound: bool) -> None:
    low, high = (float(v) for v in torch.aminmax(y_pred.detach().float()))
    if low >= 0.0 and (high <= 1.0 or not upper_bound):
        return
    expected, activation = ("in [0, 1]", "a sigmoid") if upper_bound else ("non-negative", "a softmax")
    raise ValueError(
        f"The model's output has values in [{low:.4g}, {high:.4g}] but `{loss.name}` expects probabilities "
        f"({expected}, e.g. after {activation}); the output does not look like probabilities. If the model "
        f"outputs logits, use `epochal.losses.{type(loss).__name__}(from_logits=True)`."
    )


def _check_label_range(
    labels: Tensor, y_pred: Tensor, num_classes: int, name: str, *, ignore: int | None
) -> None:
    if ignore is not None:
        labels = labels[labels != ignore]
    if labels.numel() and (bool((labels < 0).any()) or bool((labels >= num_classes).any())):
        raise ValueError(
            f"`y` holds class indices in [{int(labels.min())}, {int(labels.max())}] but the model's output "
            f"has {num_classes} classes (shape {_fmt(y_pred.shape)}); `{name}` expects indices in "
            f"[0, {num_classes - 1}]."
        )


def _class_indices(classes: int, name: str, ignore: int | None) -> TargetDomain:
    return TargetDomain(0, classes - 1, True, ignore,
                        f"`{name}` expects class indices in [0, {classes - 1}] (the model's output has {classes} classes)")


def _shape_mismatch(y_true: Tensor, y_pred: Tensor) -> str:
    return f"`y` has shape {_fmt(y_true.shape)} but the model's output has shape {_fmt(y_pred.shape)};"


def _fmt(shape: tuple[int, ...] | torch.Size) -> str:
    return str(tuple(int(d) for d in shape))


def _snake_case(name: str) -> str:
    """`"CrossEntropyLoss"` -> `"cross_entropy_loss"`, `"MSELoss"` -> `"mse_loss"`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
