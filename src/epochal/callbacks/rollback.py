"""Rollback: when a batch's loss goes non-finite or spikes, return to the last good state, apply a remedy
(a lower learning rate, skipping the batch, or both) and carry on — within a budget of retries."""

from __future__ import annotations

import bisect
import math
import warnings
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from epochal.callbacks.callback import Callback
from epochal.logs import read_values
from epochal.parallel.process import is_main_process

REASONS = ("nan", "spike")
REMEDIES = ("lower_lr", "skip")
_WARMUP = 10  # good losses a spike is judged against, at least (or `window`, when smaller)


@dataclass(frozen=True)
class FailedBatch:
    """The first batch whose loss failed a check: `reason` is `"nan"` or `"spike"` (above `threshold`)."""

    epoch: int
    batch: int
    loss: float
    reason: str
    threshold: float | None = None


@dataclass(frozen=True)
class Ledger:
    """What rollbacks have done so far in a fit; it outlives the state they restore."""

    count: int
    skipped: frozenset[tuple[int, int]]
    lower_at: frozenset[tuple[int, int]]
    accepted: frozenset[tuple[int, int]]


class Rollback(Callback):
    """Roll back to the last good state when the loss becomes NaN/inf or spikes, apply a remedy, carry on.

    Each batch's loss stays on the device; every `check_every` batches (and before every backup and
    each epoch's validation) they are read together. All good: the state there is the new good state
    — everything a backup holds (weights, every optimizer, the step pipeline's state, RNGs, callbacks,
    the epoch's running sums), kept in memory, or with `restore_from="backup"` the newest backup of the
    run's `BackupAndRestore`. A failed batch: the run goes back to the good state and runs the epoch
    again from there; the batches before the failed one repeat exactly as they ran, and the remedy
    takes effect at the failed batch, so the result does not depend on where the good state was: the
    batch is skipped, and/or its update and those after it use the lowered rate. (A spike's loss came
    from the weights before it, which the replay reproduces, so with `"lower_lr"` alone it is not judged
    again; a NaN loss would make NaN weights, so it never passes.)
    Each rollback is an event in `History.events` (and the run's report). Deterministic: the same run
    with the same failure gives the same result, resumed from a backup or not.

    Args:
        on: What fails a batch: `"nan"`, a loss that is NaN or infinite; `"spike"`, a loss above
            `spike_factor` times the median of the last `window` good losses (judged once 10 are known,
            or `window` when smaller). Defaults to `("nan", "spike")`.
        remedy: `"lower_lr"` multiplies every optimizer's learning rate by `factor` from the failed batch
            on (a per-batch schedule sets its own rate at the next batch: use `"skip"` with one);
            `"skip"` drops the failed batch when the epoch runs again (it is still drawn, so the data
            order does not move). Defaults to `("lower_lr", "skip")`.
        factor: The learning rate's multiplier for `"lower_lr"`. Defaults to `0.5`.
        spike_factor: How many times the recent median a spike is. Defaults to `10.0`.
        window: Good losses the median is taken over. Defaults to `50`.
        retries: Rollbacks allowed in one `fit`; the next failed batch restores the last good state and
            stops training, with a warning. Defaults to `3`.
        check_every: Batches whose losses are read together (one host sync): a failure replays at most
            this many batches (with `restore_from="backup"`, back to the newest backup). Defaults to `100`.
        restore_from: `"memory"` (a copy of the state at each passing check: the model and optimizer
            state again in memory) or `"backup"` (no copy: the newest backup, written at the start if
            there is none; needs a `BackupAndRestore`). Defaults to `"memory"`.
        verbose: `1` prints a line for each rollback. Defaults to `1`.

    Example:
        >>> guard = Rollback(on=("nan",), remedy="skip", retries=2)
        >>> guard.on_train_begin(); guard.on_epoch_begin(0)
        >>> for batch, loss in enumerate([0.9, 0.8, float("nan")]):
        ...     guard.on_train_batch_end(batch, {"loss": loss})
        >>> guard.check(force=True)
        FailedBatch(epoch=0, batch=2, loss=nan, reason='nan', threshold=None)
    """

    def __init__(self, on: str | Sequence[str] = REASONS, *, remedy: str | Sequence[str] = REMEDIES,
                 factor: float = 0.5, spike_factor: float = 10.0, window: int = 50, retries: int = 3,
                 check_every: int = 100, restore_from: str = "memory", verbose: int = 1) -> None:
        super().__init__()
        self.on = _choices("on", on, REASONS)
        self.remedy = _choices("remedy", remedy, REMEDIES)
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < 1:
            raise ValueError(f"`factor` must be a number in (0, 1). Received: factor={factor!r}")
        if isinstance(spike_factor, bool) or not isinstance(spike_factor, (int, float)) or not spike_factor > 1:
            raise ValueError(f"`spike_factor` must be a number above 1. Received: spike_factor={spike_factor!r}")
        for name, value, least in (("window", window, 1), ("retries", retries, 0), ("check_every", check_every, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"`{name}` must be an integer >= {least}. Received: {name}={value!r}")
        if restore_from not in ("memory", "backup"):
            raise ValueError(f"`restore_from` must be 'memory' or 'backup'. Received: restore_from={restore_from!r}")
        self.factor, self.spike_factor, self.window, self.retries = float(factor), float(spike_factor), window, retries
        self.check_every, self.restore_from, self.verbose = check_every, restore_from, verbose
        self._reset()

    def _reset(self) -> None:
        self._epoch = 0
        self._pending: list[tuple[int, int, Mapping[str, float]]] = []  # (epoch, batch, logs on the device)
        self._good = _RecentLosses(self.window)
        self._count = 0
        self._skipped: set[tuple[int, int]] = set()
        self._lower_at: set[tuple[int, int]] = set()  # (epoch, batches done) where the rate is lowered
        self._accepted: set[tuple[int, int]] = set()  # failed batches run again with a lower rate: not judged
        self._lowered: set[tuple[int, int]] = set()  # of `_lower_at`, those the rates now hold (part of the state)

    def on_train_begin(self, logs: Mapping[str, float] | None = None) -> None:
        self._reset()

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        if logs is not None and "loss" in logs:
            self._pending.append((self._epoch, batch, logs))

    # -- what the training loop asks at its safe points (`epochal.training.rollback_points`) ----------

    def check(self, force: bool) -> FailedBatch | bool:
        """Read the pending losses if `check_every` are waiting (or `force`): the first failed batch, True
        when all were good (a new good state), False when nothing was read."""
        if not self._pending or (not force and len(self._pending) < self.check_every):
            return bool(force)
        pending, self._pending = self._pending, []
        for (epoch, batch, _), loss in zip(pending, read_values([logs for _, _, logs in pending], "loss")):
            if (epoch, batch) in self._accepted:
                continue
            failed = self._judge(epoch, batch, loss)
            if failed is not None:
                return failed
            self._good.append(loss)
        return True

    def _judge(self, epoch: int, batch: int, loss: float) -> FailedBatch | None:
        if not math.isfinite(loss):
            return FailedBatch(epoch, batch, loss, "nan") if "nan" in self.on else None
        if "spike" in self.on and len(self._good) >= min(_WARMUP, self.window):
            threshold = self.spike_factor * self._good.median()
            if loss > threshold:
                return FailedBatch(epoch, batch, loss, "spike", threshold)
        return None

    def ledger(self) -> Ledger:
        """The rollbacks so far, to carry over the restore of an earlier state."""
        return Ledger(self._count, frozenset(self._skipped), frozenset(self._lower_at), frozenset(self._accepted))

    def rolled_back(self, failed: FailedBatch, ledger: Ledger) -> dict[str, Any]:
        """After the good state was restored: plan the remedy and say what it is (for History)."""
        self._pending = []
        self._count, self._skipped = ledger.count + 1, set(ledger.skipped)
        self._lower_at, self._accepted = set(ledger.lower_at), set(ledger.accepted)
        details: dict[str, Any] = {"reason": failed.reason, "loss": failed.loss, "rollback": self._count,
                                   "retries": self.retries, "exhausted": self._count > self.retries}
        if failed.threshold is not None:
            details["threshold"] = failed.threshold
        if details["exhausted"]:
            return details
        details["remedy"] = list(self.remedy)
        if "skip" in self.remedy:
            self._skipped.add((failed.epoch, failed.batch))
        if "lower_lr" in self.remedy:
            self._lower_at.add((failed.epoch, failed.batch))
            if failed.reason == "spike":  # a finite loss: its update runs again, with the lower rate
                self._accepted.add((failed.epoch, failed.batch))
            details["lr_factor"] = self.factor
        return details

    def lower_if_due(self, epoch: int, done: int) -> None:
        """With `done` batches of `epoch` done: lower the learning rates if a failed batch is next (once: a
        restored state says whether its rates are lowered already)."""
        if (epoch, done) in self._lower_at and (epoch, done) not in self._lowered:
            self._lowered.add((epoch, done))
            for optimizer in self.model.optimizers.values():  # type: ignore[union-attr]
                for group in optimizer.param_groups:
                    group["lr"] = group["lr"] * self.factor

    def skips(self, epoch: int, first: int, count: int) -> bool:
        """Whether one of batches `first .. first+count-1` of `epoch` failed and is skipped."""
        return bool(self._skipped) and any((epoch, batch) in self._skipped for batch in range(first, first + count))

    def say(self, failed: FailedBatch, details: Mapping[str, Any], where: str) -> None:
        """One line on what happened (or a warning when out of retries)."""
        what = f"epoch {failed.epoch + 1}, batch {failed.batch}: loss {failed.loss:.4g}" + (
            f" above {failed.threshold:.4g} ({self.spike_factor:g} x the recent median)" if failed.threshold else "")
        if details["exhausted"]:
            warnings.warn(f"Rollback: {what}, after {self.retries} rollback(s) (retries={self.retries}): training "
                          f"stops at the last good state, {where}.", stacklevel=2)
            return
        if self.verbose and is_main_process():
            remedies = [f"skipping batch {failed.batch}"] if "skip" in self.remedy else []
            if "lr_factor" in details:
                remedies.append(f"learning rate x{self.factor:g} from batch {failed.batch} on")
            print(f"Rollback {details['rollback']}/{self.retries}: {what}; back to the state {where}, "
                  f"{' and '.join(remedies)}.")

    def state_dict(self) -> dict[str, Any]:
        """The rollbacks so far and the recent good losses; the pending ones are always empty at a backup
        (they are read before it is written)."""
        return {"count": self._count, "skipped": _pairs(self._skipped), "lower_at": _pairs(self._lower_at),
                "accepted": _pairs(self._accepted), "lowered": _pairs(self._lowered), "good": self._good.values()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._pending = []
        self._count = int(state["count"])
        self._skipped, self._lower_at, self._accepted, self._lowered = (
            {(int(epoch), int(batch)) for epoch, batch in state[key]}
            for key in ("skipped", "lower_at", "accepted", "lowered"))
        self._good = _RecentLosses(self.window, [float(loss) for loss in state["good"]])


def _choices(name: str, value: str | Sequence[str], allowed: tuple[str, ...]) -> tuple[str, ...]:
    chosen = (value,) if isinstance(value, str) else tuple(value)
    if not chosen or any(item not in allowed for item in chosen):
        raise ValueError(f"`{name}` must be one or more of {', '.join(map(repr, allowed))}. Received: {name}={value!r}")
    return chosen


class _RecentLosses:
    """The last `size` good losses, kept sorted as well, so that their median costs no sort per batch."""

    def __init__(self, size: int, losses: list[float] = ()) -> None:  # type: ignore[assignment]
        self._recent: deque[float] = deque(maxlen=size)
        self._sorted: list[float] = []
        for loss in losses:
            self.append(loss)

    def append(self, loss: float) -> None:
        if len(self._recent) == self._recent.maxlen:
            del self._sorted[bisect.bisect_left(self._sorted, self._recent[0])]
        self._recent.append(loss)
        bisect.insort(self._sorted, loss)

    def median(self) -> float:
        middle = len(self._sorted) // 2
        return self._sorted[middle] if len(self._sorted) % 2 else (self._sorted[middle - 1] + self._sorted[middle]) / 2

    def values(self) -> list[float]:
        return list(self._recent)

    def __len__(self) -> int:
        return len(self._recent)


def _pairs(items: set[tuple[int, int]]) -> list[list[int]]:
    return sorted([list(item) for item in items])
