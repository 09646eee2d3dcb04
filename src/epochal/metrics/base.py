"""The two kinds of metric the engine runs: per-sample means, and `Metric`s computed from a pass's state.

A *mean* metric (`MeanMetric`) gives one value per sample; its batch value is their mean and the
epoch value is the exact sample-weighted mean the loop accumulates, so it needs no state and can run
inside a compiled step. A `Metric` (Keras's stateful kind: precision, AUC, RMSE...) sums statistics
over the whole pass and computes its value from them once at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from epochal.losses import _snake_case

PerSample = Callable[[Tensor, Tensor], Tensor]
Gather = Callable[[Any], list[Any]]


def per_sample(values: Tensor) -> Tensor:
    """Mean over every non-batch axis, so a batch mean equals Keras's mean over all elements."""
    return values.reshape(values.shape[0], -1).float().mean(dim=1) if values.ndim > 1 else values.float()


class MeanMetric:
    """A metric with one value per sample; the batch value is their mean (the loop averages epochs exactly)."""

    stateful = False

    def __init__(self, name: str, fn: PerSample) -> None:
        self.name = name
        self.fn = fn

    def __call__(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        value = self.fn(y_true, y_pred)
        return value.float().mean() if value.ndim else value.float()

    def suffixes(self) -> list[str]:
        return [""]


class Metric:
    """A metric computed from statistics summed over a whole pass, as Keras's `update_state` / `result`.

    A subclass says what one batch adds (`batch_state`: named tensors) and how the value follows from
    the total (`value`: a scalar, or one value per entry of `suffixes()`). States add up across
    batches and processes; those named in `concatenated` are joined along their first axis instead
    (exact AUC keeps every prediction). The batch value the logs show is `value` of that batch alone.

    Args:
        name: The log key. Defaults to the snake_case class name (`"precision"`).
    """

    stateful = True
    concatenated: tuple[str, ...] = ()

    def __init__(self, name: str | None = None) -> None:
        self.name = name if name is not None else _snake_case(type(self).__name__)
        self._state: dict[str, Any] | None = None

    # -- what a subclass defines ------------------------------------------------------------------

    def batch_state(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None) -> dict[str, Tensor]:
        """The statistics one batch adds to the state."""
        raise NotImplementedError(f"{type(self).__name__} must implement `batch_state`.")

    def value(self, state: Mapping[str, Tensor]) -> Tensor:
        """The metric's value from a state (one batch's or the whole pass's)."""
        raise NotImplementedError(f"{type(self).__name__} must implement `value`.")

    def build(self, y_true: Tensor, y_pred: Tensor) -> None:
        """Learn what depends on the data's shape (the number of classes) from the first batch."""

    def suffixes(self) -> list[str]:
        """What each entry of `value` adds to the log key (known after `build`); `[""]` for a scalar."""
        return [""]

    # -- Keras's API ------------------------------------------------------------------------------

    def update_state(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None) -> None:
        """Add one batch to the state."""
        self._merge(self.batch_state(y_true, y_pred, sample_weight))

    def result(self, gather: Gather | None = None) -> Tensor:
        """The value over everything added since the last reset.

        `gather` (the loop's `sync.gather`) collects every process's state, so the value covers
        all of them; every process must then call `result` together.
        """
        state = self._totals()
        if gather is not None:
            parts = [part for part in gather(_on_cpu(state)) if part is not None]
            if len(parts) > 1 or (state is None and parts):
                device = next(iter(state.values())).device if state else torch.device("cpu")
                state = {k: v.to(device) for k, v in _combine(parts, self.concatenated).items()}
        if state is None:
            raise RuntimeError(f"The metric `{self.name}` has no data yet: call `update_state` first.")
        return self.value(state)

    def reset_state(self) -> None:
        self._state = None

    # -- the engine's API -------------------------------------------------------------------------

    def __call__(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        """Add one batch and return that batch's own value (the batch logs)."""
        state = self.batch_state(y_true, y_pred, sample_weight)
        self._merge(state)
        return self.value(state)

    def state_dict(self) -> dict[str, Tensor]:
        """The accumulated state as CPU tensors (empty before any batch), for backups."""
        return _on_cpu(self._totals()) or {}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        self._state = {k: ([v.clone()] if k in self.concatenated else v.clone()) for k, v in state.items()} or None

    # -- helpers ----------------------------------------------------------------------------------

    def _merge(self, batch: Mapping[str, Tensor]) -> None:
        if self._state is None:
            self._state = {k: ([v] if k in self.concatenated else _wide(v)) for k, v in batch.items()}
            return
        for key, value in batch.items():
            if key in self.concatenated:
                self._state[key].append(value)
            else:
                self._state[key] = self._state[key].to(value.device) + value

    def _totals(self) -> dict[str, Tensor] | None:
        if self._state is None:
            return None
        totals = {}
        for key, value in self._state.items():
            if key in self.concatenated:
                parts = [part.to(value[-1].device) for part in value]
                value = torch.cat(parts) if len(parts) > 1 else parts[0]
                self._state[key] = [value]  # joined once, not again at every read
            totals[key] = value
        return totals


def _wide(value: Tensor) -> Tensor:
    """A running sum in float64 (exact counts past 2**24), except where the device has none (MPS)."""
    if value.is_floating_point() and value.device.type != "mps":
        return value.to(torch.float64)
    return value


def _on_cpu(state: dict[str, Tensor] | None) -> dict[str, Tensor] | None:
    return None if state is None else {k: v.detach().cpu() for k, v in state.items()}


def _combine(parts: list[dict[str, Tensor]], concatenated: tuple[str, ...]) -> dict[str, Tensor]:
    """Several processes' states as one: summed, or joined for the `concatenated` names."""
    combined = {}
    for key in parts[0]:
        values = [part[key] for part in parts]
        combined[key] = torch.cat(values) if key in concatenated else torch.stack(values).sum(0)
    return combined


class WeightedMean(Metric):
    """The weighted mean of a per-sample function over a pass: `sum(w * v) / sum(w)`, as Keras's `Mean`.

    Keras's metrics weigh by `sample_weight` this way (a loss instead divides by the batch size), so
    a weighted metric is a state, not a mean the loop can average.

    Args:
        fn: `(y_true, y_pred) -> per-sample values`.
        name: The log key. Defaults to `fn`'s name.
    """

    def __init__(self, fn: PerSample, name: str | None = None) -> None:
        super().__init__(name if name is not None else getattr(fn, "name", None) or getattr(fn, "__name__", None))
        self.fn = fn

    def batch_state(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None) -> dict[str, Tensor]:
        values = per_sample(self.fn(y_true, y_pred))
        if sample_weight is None:
            return {"total": values.sum(), "count": values.new_tensor(float(values.numel()))}
        weights = sample_weight.reshape(values.shape).to(values)
        return {"total": (values * weights).sum(), "count": weights.sum()}

    def value(self, state: Mapping[str, Tensor]) -> Tensor:
        return state["total"] / state["count"]


class TorchMetric:
    """A torchmetrics `Metric`: batch values from `forward`, the epoch value from `compute()`.

    torchmetrics reduces its own state across processes, so `result` ignores `gather`.
    """

    stateful = True

    def __init__(self, name: str, metric: Any) -> None:
        self.name = name
        self.metric = metric

    def __call__(self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        if not torch.is_floating_point(y_true) and y_pred.ndim == y_true.ndim + 1 and y_pred.shape[-1] == 1:
            y_pred = y_pred.squeeze(-1)
        elif y_pred.ndim == y_true.ndim and y_pred.shape[-1] == 1:
            y_pred, y_true = y_pred.squeeze(-1), y_true.squeeze(-1)
        return self.metric(y_pred, y_true.long()).detach().float()

    def suffixes(self) -> list[str]:
        return [""]

    def result(self, gather: Gather | None = None) -> Tensor:
        return self.metric.compute().detach().float()

    def reset_state(self) -> None:
        self.metric.reset()

    def state_dict(self) -> dict[str, Any]:
        """The accumulated state (torchmetrics' `_defaults` names) and its update count."""
        inner = self.metric
        return {"values": {name: _to_cpu(getattr(inner, name)) for name in inner._defaults},
                "updates": int(getattr(inner, "_update_count", 0))}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        inner = self.metric
        for name, value in state["values"].items():
            device = inner.device
            setattr(inner, name, [v.to(device) for v in value] if isinstance(value, list) else value.to(device))
        inner._update_count = state["updates"]
        inner._computed = None


def _to_cpu(value: Any) -> Any:
    return [v.cpu() for v in value] if isinstance(value, list) else value.cpu()
