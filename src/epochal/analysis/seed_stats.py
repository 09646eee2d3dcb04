"""Seed noise: a figure's mean and confidence interval over runs that differ only in their seed, and whether one
configuration beats another beyond that noise (Welch's t-test, from scipy: `pip install 'epochal[stats]'`)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from epochal._optional import require
from epochal.monitoring import resolve_mode

if TYPE_CHECKING:
    from epochal.analysis.curves import Curves


@dataclass(frozen=True)
class Estimate:
    """A figure over `n` seeds: its mean, standard deviation and confidence interval `[low, high]` (Student's t)."""

    mean: float
    low: float
    high: float
    std: float
    n: int

    def __str__(self) -> str:
        if self.n < 2:
            return f"{self.mean:.4g}"
        return f"{self.mean:.4g} ± {(self.high - self.low) / 2:.2g}"


@dataclass(frozen=True)
class Verdict:
    """Whether configuration `a` or `b` is better on `metric` beyond seed noise: `winner` is None when not."""

    metric: str
    a: str
    b: str
    estimate_a: Estimate
    estimate_b: Estimate
    p_value: float
    alpha: float
    mode: str
    winner: str | None

    def __str__(self) -> str:
        means = f"mean {self.estimate_a.mean:.4g} vs {self.estimate_b.mean:.4g}, Welch's t-test p={self.p_value:.2g}"
        if self.winner is None:
            return (f"{self.a} vs {self.b} on {self.metric}: no difference beyond seed noise ({means} >= {self.alpha:g}, "
                    f"{self.estimate_a.n} and {self.estimate_b.n} seeds).")
        loser = self.b if self.winner == self.a else self.a
        better = "lower" if self.mode == "min" else "higher"
        return (f"{self.winner} beats {loser} on {self.metric} beyond seed noise ({better} is better; {means} < "
                f"{self.alpha:g}, {self.estimate_a.n} and {self.estimate_b.n} seeds).")


def estimate(values: Sequence[float], confidence: float = 0.95) -> Estimate:
    """Mean and `confidence` interval of `values` (one per seed); with one value the interval is unknown (NaN).

    Example:
        >>> str(estimate([0.97, 0.98, 0.975]))
        '0.975 ± 0.012'
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("An estimate needs at least one value. Received: none")
    if not 0 < confidence < 1:
        raise ValueError(f"`confidence` must be in (0, 1). Received: confidence={confidence!r}")
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Estimate(mean, math.nan, math.nan, math.nan, 1)
    std = statistics.stdev(values)
    half = float(require("scipy.stats").t.ppf((1 + confidence) / 2, len(values) - 1)) * std / math.sqrt(len(values))
    return Estimate(mean, mean - half, mean + half, std, len(values))


def compare(a: str, values_a: Sequence[float], b: str, values_b: Sequence[float], metric: str, *,
            mode: str = "auto", alpha: float = 0.05, confidence: float = 0.95) -> Verdict:
    """Whether `a` beats `b` on `metric` beyond seed noise: Welch's t-test (unequal variances) at level `alpha`.

    Args:
        a: The first configuration's name. b: The second's.
        values_a: `metric` in each of `a`'s runs (one per seed); at least 2. values_b: Likewise for `b`.
        metric: The figure's name; `mode="auto"` reads from it whether higher is better (as EarlyStopping).
        mode: `"min"`, `"max"` or `"auto"`. Defaults to `"auto"`.
        alpha: The test's level. Defaults to `0.05`.
        confidence: Of the intervals in the estimates. Defaults to `0.95`.
    """
    if min(len(values_a), len(values_b)) < 2:
        raise ValueError(f"Telling {a} from {b} beyond seed noise needs at least 2 runs (seeds) of each. "
                         f"Received: {len(values_a)} and {len(values_b)}")
    mode = resolve_mode(mode, metric)
    first, second = estimate(values_a, confidence), estimate(values_b, confidence)
    if first.std == 0 and second.std == 0:  # no noise at all: any difference is beyond it
        p_value = 1.0 if first.mean == second.mean else 0.0
    else:
        p_value = float(require("scipy.stats").ttest_ind(values_a, values_b, equal_var=False).pvalue)
    winner = None
    if p_value < alpha and first.mean != second.mean:
        winner = a if (first.mean < second.mean) == (mode == "min") else b
    return Verdict(metric, a, b, first, second, p_value, alpha, mode, winner)


def best_figures(history: Curves, monitor: str = "val_loss") -> dict[str, Any]:
    """Each key's value at the run's best epoch by `monitor` (EarlyStopping's rule; the last epoch when the
    history has no `monitor`), and that epoch as `"best epoch"` (0-based)."""
    if not history.epoch:
        return {}
    from epochal.analysis.diagnosis import diagnose

    key = monitor if monitor in history.history else next(iter(history.history), monitor)
    best = diagnose(history, key).best_epoch if key in history.history else None
    best = history.epoch[-1] if best is None else best
    return {"best epoch": best, **{name: dict(zip(history.epochs_of(name), values)).get(best)
                                   for name, values in history.history.items()}}
