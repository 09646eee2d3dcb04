"""The one rule for "did the monitored value improve?", shared by the monitoring callbacks and the diagnosis."""

from __future__ import annotations

import math

# Metric names where a larger value is better, besides anything containing "acc".
_HIGHER_IS_BETTER = ("auc", "precision", "recall", "f1", "fbeta", "r2", "iou", "io_u", "jaccard", "dice", "top_k")


def resolve_mode(mode: str, monitor: str) -> str:
    """`"min"` or `"max"` for `mode`, reading `"auto"` from the monitored key's name as Keras does."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"`mode` must be one of 'auto', 'min', 'max'. Received: mode={mode!r}")
    if mode != "auto":
        return mode
    name = monitor.removeprefix("val_").lower()
    if "acc" in name or any(name.startswith(m) or name.endswith(m) for m in _HIGHER_IS_BETTER):
        return "max"
    return "min"


def initial_best(mode: str, baseline: float | None = None) -> float:
    """The starting `best`: `baseline` if given, else the worst possible value for `mode`."""
    if baseline is not None:
        return float(baseline)
    return math.inf if mode == "min" else -math.inf


def is_improvement(current: float, best: float, *, mode: str, min_delta: float = 0.0) -> bool:
    """Strict improvement: `current < best - min_delta` (min) or `current > best + min_delta` (max)."""
    delta = abs(min_delta)
    if mode == "min":
        return current < best - delta
    return current > best + delta


class Patience:
    """EarlyStopping's rule as plain state, as Keras 3's: fed one epoch's value at a time, it says when to stop.

    An epoch before `start_from_epoch` is not counted. Otherwise `wait` grows by one; a value that
    improves on `best` (strictly, beyond `min_delta`) becomes the best and stops nothing, and resets
    `wait` to 0 only if it also beats `baseline` (when one is given). Once `wait` reaches `patience`
    after an epoch that did not improve (and not at epoch 0) the rule stops. `best` starts at the
    worst value, so the best epoch is tracked even when no epoch beats the baseline.

    Example:
        >>> rule = Patience("min", patience=1)
        >>> [rule.update(epoch, value) for epoch, value in enumerate([3.0, 2.0, 2.5])]
        [False, False, True]
        >>> rule.best, rule.best_epoch, rule.stopped_epoch
        (2.0, 1, 2)
    """

    def __init__(self, mode: str, *, min_delta: float = 0.0, patience: int = 0, baseline: float | None = None,
                 start_from_epoch: int = 0) -> None:
        self.mode, self.min_delta, self.patience = mode, abs(min_delta), patience
        self.baseline, self.start_from_epoch = baseline, start_from_epoch
        self.reset()

    def reset(self) -> None:
        self.wait = 0
        self.best = initial_best(self.mode)
        self.best_epoch = 0
        self.stopped_epoch: int | None = None
        self.improved = False  # whether the last counted value was an improvement

    def counts(self, epoch: int) -> bool:
        """Whether `epoch` is watched at all (`start_from_epoch` has passed)."""
        return epoch >= self.start_from_epoch

    def update(self, epoch: int, value: float) -> bool:
        """Take `epoch`'s value; True when training should stop now."""
        self.improved = False
        if not self.counts(epoch):
            return False
        self.wait += 1
        if self._beats(value, self.best):
            self.best, self.best_epoch, self.improved = value, epoch, True
            if self.baseline is None or self._beats(value, self.baseline):
                self.wait = 0
            return False
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            return True
        return False

    def _beats(self, value: float, reference: float) -> bool:
        return is_improvement(value, reference, mode=self.mode, min_delta=self.min_delta)

    def state_dict(self) -> dict[str, float | int | None]:
        return {"wait": self.wait, "best": self.best, "best_epoch": self.best_epoch, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state: dict[str, float | int | None]) -> None:
        self.wait = int(state["wait"])  # type: ignore[arg-type]
        self.best = float(state["best"])  # type: ignore[arg-type]
        self.best_epoch = int(state["best_epoch"])  # type: ignore[arg-type]
        stopped = state.get("stopped_epoch")
        self.stopped_epoch = None if stopped is None else int(stopped)
