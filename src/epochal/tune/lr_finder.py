"""The learning-rate range test: train briefly while the rate grows exponentially, then put everything back."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from epochal.tune.model_state import Snapshot

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure



class Sweepable(Protocol):
    """What the sweep uses of a compiled `epochal.Model`."""

    module: torch.nn.Module

    @property
    def optimizer(self) -> torch.optim.Optimizer | None: ...

    def train_on_batch(self, x: Any, y: Any = None) -> dict[str, float]: ...


@dataclass(frozen=True)
class LRFinderResult:
    """The sweep: each step's learning rate, batch loss and smoothed loss, and the suggested rate."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float | None

    def plot(self, ax: Axes | None = None) -> Figure:
        """Loss against learning rate (log scale), the suggestion marked."""
        from epochal.analysis.plotting import plot_lr_sweep

        return plot_lr_sweep(self.lrs, self.losses, self.smoothed, self.suggestion, ax)


def find_lr(
    model: Sweepable, x: Any, y: Any, *, start_lr: float = 1e-7, end_lr: float = 10.0, steps: int = 100,
    batch_size: int = 32, smoothing: float = 0.9, stop_factor: float = 4.0,
) -> LRFinderResult:
    """Sweep the learning rate from `start_lr` to `end_lr` over `steps` batches and suggest one.

    The suggestion is where the smoothed loss falls fastest against log(lr), before its lowest
    point (past it the loss is blowing up, and the smoothing lags). The sweep stops early
    once the smoothed loss exceeds `stop_factor` times its lowest value. Weights, optimizer state
    (learning rate included) and the random generators are restored afterwards, so the model is
    exactly as it was.

    Args:
        model: A compiled `epochal.Model`.
        x: Inputs (an array or tensor indexable by sample).
        y: Targets, likewise.
        start_lr: The first learning rate. Defaults to `1e-7`.
        end_lr: The last learning rate. Defaults to `10.0`.
        steps: Batches in the sweep, one learning rate each. Defaults to `100`.
        batch_size: Samples per batch, drawn shuffled and cycled. Defaults to `32`.
        smoothing: Exponential-moving-average factor of the loss (bias-corrected). Defaults to `0.9`.
        stop_factor: Stop once the smoothed loss exceeds this multiple of its lowest value. Defaults to `4.0`.
    """
    if model.optimizer is None:
        raise RuntimeError("You must call `compile()` before `find_lr()`.")
    if not 0 < start_lr < end_lr:
        raise ValueError("`start_lr` must be positive and below `end_lr`. "
                         f"Received: start_lr={start_lr}, end_lr={end_lr}")
    if steps < 2:
        raise ValueError(f"`steps` must be at least 2. Received: steps={steps}")
    x, y = (v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v)) for v in (x, y))
    saved = Snapshot(model)
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    try:
        average, lowest = 0.0, math.inf
        for step, index in enumerate(_batches(len(x), batch_size, steps)):
            lr = start_lr * (end_lr / start_lr) ** (step / (steps - 1))
            for group in model.optimizer.param_groups:
                group["lr"] = lr
            loss = model.train_on_batch(x[index], y[index])["loss"]
            average = smoothing * average + (1 - smoothing) * loss
            lrs.append(lr)
            losses.append(loss)
            smoothed.append(average / (1 - smoothing ** (step + 1)))
            if not math.isfinite(loss) or smoothed[-1] > stop_factor * lowest:
                break
            lowest = min(lowest, smoothed[-1])
    finally:
        saved.restore()
    return LRFinderResult(lrs, losses, smoothed, _steepest(lrs, smoothed))


def _batches(samples: int, batch_size: int, steps: int) -> list[torch.Tensor]:
    """`steps` index batches from reshuffled passes over the samples."""
    passes = math.ceil(steps * batch_size / samples)
    order = torch.cat([torch.randperm(samples) for _ in range(passes)])
    return [order[i * batch_size:(i + 1) * batch_size] for i in range(steps)]


def _steepest(lrs: list[float], smoothed: list[float]) -> float | None:
    """The rate where the smoothed loss falls fastest per decade, searched before its lowest point.

    The first tenth of the sweep is skipped: its average rests on a handful of batches.
    """
    values = np.asarray(smoothed)
    if np.isfinite(values).sum() < 3:
        return None
    end = int(np.nanargmin(np.where(np.isfinite(values), values, np.nan))) + 1
    start = len(values) // 10
    if end - start < 3:
        return None
    slopes = np.gradient(values[:end], np.log10(lrs[:end]))
    return float(lrs[start + int(np.argmin(slopes[start:]))])
